-- What the scheduler needs beyond the authoring schema: mailbox spacing, retries waiting in
-- the database, one-round-trip capacity reservation, and enrollment counts that cost nothing
-- on the scheduler's hot update (which moves next_send_at, never status).

-- Spacing: the earliest moment this mailbox may be handed its next send.
ALTER TABLE mailboxes ADD COLUMN next_send_slot_at timestamptz;

-- A transiently failed send waits here (status 'retrying') until retry_at, then is
-- dispatched again with the same row, Message-ID and reserved capacity.
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check CHECK (status IN (
    'queued', 'sending', 'sent', 'failed', 'bounced', 'unknown', 'cancelled', 'retrying'));
ALTER TABLE messages ADD COLUMN retry_at timestamptz;
CREATE INDEX messages_retry_due_idx ON messages (retry_at) WHERE status = 'retrying';
-- (enrollment_id, step_id) is UNIQUE already, so its index serves every lookup by enrollment.
DROP INDEX messages_enrollment_idx;

-- Reserves units of mailboxes' daily limits in one call. For each mailbox: at most `want`
-- units, never beyond `day_limit` for `day`; when `next_slot` is given (the mailbox spaces its
-- sends) at most one unit, only if its slot is due at `now`, and the slot moves to
-- `next_slot`. Rows are locked in mailbox order, so concurrent callers cannot deadlock.
-- Returns what each mailbox granted (0 when full or not due).
CREATE FUNCTION reserve_mailbox_capacity(
    p_mailboxes uuid[], p_days date[], p_wants integer[], p_limits integer[],
    p_next_slots timestamptz[], p_now timestamptz
) RETURNS TABLE (out_mailbox_id uuid, out_granted integer) AS $$
DECLARE
    i integer;
    v_used integer;
    v_grant integer;
    v_slot_taken boolean;
BEGIN
    FOR i IN SELECT t.ord FROM unnest(p_mailboxes) WITH ORDINALITY AS t(m, ord) ORDER BY t.m LOOP
        out_mailbox_id := p_mailboxes[i];
        v_grant := greatest(0, p_wants[i]);
        IF p_next_slots[i] IS NOT NULL AND v_grant > 0 THEN
            UPDATE mailboxes SET next_send_slot_at = p_next_slots[i]
             WHERE id = p_mailboxes[i]
               AND (next_send_slot_at IS NULL OR next_send_slot_at <= p_now);
            v_slot_taken := FOUND;
            v_grant := CASE WHEN v_slot_taken THEN 1 ELSE 0 END;
        END IF;
        IF v_grant > 0 THEN
            INSERT INTO mailbox_daily_usage (mailbox_id, day, reserved)
                VALUES (p_mailboxes[i], p_days[i], 0)
                ON CONFLICT (mailbox_id, day) DO NOTHING;
            SELECT u.reserved INTO v_used FROM mailbox_daily_usage u
             WHERE u.mailbox_id = p_mailboxes[i] AND u.day = p_days[i] FOR UPDATE;
            v_grant := greatest(0, least(v_grant, p_limits[i] - v_used));
            IF v_grant > 0 THEN
                UPDATE mailbox_daily_usage u SET reserved = v_used + v_grant
                 WHERE u.mailbox_id = p_mailboxes[i] AND u.day = p_days[i];
            ELSIF p_next_slots[i] IS NOT NULL THEN
                -- Full: the slot taken above was not used; give it back.
                UPDATE mailboxes SET next_send_slot_at = p_now WHERE id = p_mailboxes[i];
            END IF;
        END IF;
        out_granted := v_grant;
        RETURN NEXT;
    END LOOP;
END;
$$ LANGUAGE plpgsql;

-- Enrollment counts by status: a row trigger that fires only when status changes, instead of
-- a statement trigger that built transition tables of every row the scheduler touched (it
-- updates next_send_at and current_step of thousands of rows a second, status rarely).
DROP TRIGGER enrollments_count_updated ON enrollments;
DROP FUNCTION count_enrollments_updated();
CREATE FUNCTION count_enrollment_status_change() RETURNS trigger AS $$
BEGIN
    EXECUTE format(
        'UPDATE sequence_stats SET %I = %I - 1, %I = %I + 1 WHERE sequence_id = $1',
        OLD.status, OLD.status, NEW.status, NEW.status)
        USING NEW.sequence_id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER enrollments_count_status AFTER UPDATE OF status ON enrollments
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION count_enrollment_status_change();
