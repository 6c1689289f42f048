DROP TRIGGER enrollments_count_status ON enrollments;
DROP FUNCTION count_enrollment_status_change();
CREATE FUNCTION count_enrollments_updated() RETURNS trigger AS $$
BEGIN
    PERFORM bump_sequence_stats(coalesce((
        SELECT jsonb_agg(jsonb_build_object('sequence_id', sequence_id, 'status', status,
                                            'delta', n, 'enrolled', 0))
          FROM (
            SELECT sequence_id, status, sum(d) AS n FROM (
                SELECT o.sequence_id, o.status, -1 AS d
                  FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE n.status <> o.status
                UNION ALL
                SELECT n.sequence_id, n.status, 1
                  FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE n.status <> o.status
            ) moves GROUP BY 1, 2
          ) g
    ), '[]'::jsonb));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER enrollments_count_updated AFTER UPDATE ON enrollments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_enrollments_updated();

DROP FUNCTION reserve_mailbox_capacity(uuid[], date[], integer[], integer[], timestamptz[], timestamptz);
CREATE INDEX messages_enrollment_idx ON messages (enrollment_id);
ALTER TABLE messages ADD CONSTRAINT messages_contact_id_fkey
    FOREIGN KEY (contact_id) REFERENCES contacts (id) ON DELETE CASCADE;
ALTER TABLE messages ADD CONSTRAINT messages_workspace_id_fkey
    FOREIGN KEY (workspace_id) REFERENCES workspaces (id) ON DELETE CASCADE;
ALTER TABLE mailbox_daily_usage DROP COLUMN last_granted;
ALTER TABLE mailbox_daily_usage DROP COLUMN day_limit;
DROP INDEX messages_retry_due_idx;
ALTER TABLE messages DROP COLUMN retry_at;
UPDATE messages SET status = 'queued' WHERE status = 'retrying';
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check CHECK (status IN (
    'queued', 'sending', 'sent', 'failed', 'bounced', 'unknown', 'cancelled'));
ALTER TABLE mailboxes DROP COLUMN next_send_slot_at;
