CREATE OR REPLACE FUNCTION queue_sequence_enrollments() RETURNS trigger AS $$
BEGIN
    IF NEW.status = 'active' THEN
        INSERT INTO due_enrollments (enrollment_id, due_at)
        SELECT e.id, e.next_send_at FROM enrollments e
         WHERE e.sequence_id = NEW.id AND e.status = 'active' AND e.next_send_at IS NOT NULL
        ON CONFLICT (enrollment_id) DO UPDATE SET due_at = EXCLUDED.due_at;
    ELSE
        DELETE FROM due_enrollments d USING enrollments e
         WHERE e.sequence_id = NEW.id AND d.enrollment_id = e.id;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER enrollments_dequeue_deleted ON enrollments;
DROP FUNCTION dequeue_deleted_enrollments();
-- Queue rows whose enrollment went while the key was off cannot exist (the trigger above
-- deleted them), so the key is valid as added.
ALTER TABLE due_enrollments ADD CONSTRAINT due_enrollments_enrollment_id_fkey
    FOREIGN KEY (enrollment_id) REFERENCES enrollments (id) ON DELETE CASCADE;

CREATE OR REPLACE FUNCTION delete_messages_of_mailboxes() RETURNS trigger AS $$
BEGIN
    DELETE FROM messages m USING gone g WHERE m.mailbox_id = g.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION delete_messages_of_steps() RETURNS trigger AS $$
BEGIN
    DELETE FROM messages m USING gone g WHERE m.step_id = g.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER contacts_unlink_events ON contacts;
DROP FUNCTION unlink_events_of_contacts();
DROP TRIGGER enrollments_unlink_events ON enrollments;
DROP FUNCTION unlink_events_of_enrollments();
DROP TRIGGER messages_unlink_events ON messages;
DROP FUNCTION unlink_events_of_messages();
DROP TRIGGER workspaces_delete_events ON workspaces;
DROP FUNCTION delete_events_of_workspaces();
-- Events whose workspace, message, enrollment or contact went while the keys were off were
-- deleted or unlinked by the triggers above, so the keys are valid as added.
ALTER TABLE events ADD CONSTRAINT events_workspace_id_fkey
    FOREIGN KEY (workspace_id) REFERENCES workspaces (id) ON DELETE CASCADE;
ALTER TABLE events ADD CONSTRAINT events_message_id_fkey
    FOREIGN KEY (message_id) REFERENCES messages (id) ON DELETE SET NULL;
ALTER TABLE events ADD CONSTRAINT events_enrollment_id_fkey
    FOREIGN KEY (enrollment_id) REFERENCES enrollments (id) ON DELETE SET NULL;
ALTER TABLE events ADD CONSTRAINT events_contact_id_fkey
    FOREIGN KEY (contact_id) REFERENCES contacts (id) ON DELETE SET NULL;
