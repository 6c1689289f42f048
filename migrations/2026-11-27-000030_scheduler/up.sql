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

-- The limit a day's units were reserved under (warmup makes it change from day to day), and
-- what the latest reservation added: reserve_mailbox_capacity returns it.
ALTER TABLE mailbox_daily_usage ADD COLUMN day_limit integer NOT NULL DEFAULT 0;
ALTER TABLE mailbox_daily_usage ADD COLUMN last_granted integer NOT NULL DEFAULT 0;

-- A message's workspace and contact are its enrollment's, and the enrollment's cascade
-- already removes it; the two extra per-row key checks cost the dispatcher about a fifth of
-- each message insert.
ALTER TABLE messages DROP CONSTRAINT messages_workspace_id_fkey;
ALTER TABLE messages DROP CONSTRAINT messages_contact_id_fkey;

-- Reserves units of mailboxes' daily limits in one statement. For each mailbox: at most
-- `want` units, never beyond `day_limit` for `day`. A mailbox that spaces its sends (a
-- `next_slot` given) gets at most one unit, and only if its slot is due at `now`; its slot
-- then moves to `next_slot`. Usage rows are written in mailbox order, so concurrent callers
-- cannot deadlock; a concurrent caller's units are seen (the upsert re-reads a row it had to
-- wait for). Returns the mailboxes that got units and how many.
CREATE FUNCTION reserve_mailbox_capacity(
    p_mailboxes uuid[], p_days date[], p_wants integer[], p_limits integer[],
    p_next_slots timestamptz[], p_now timestamptz
) RETURNS TABLE (out_mailbox_id uuid, out_granted integer) AS $$
    WITH request AS (
        SELECT * FROM unnest(p_mailboxes, p_days, p_wants, p_limits, p_next_slots)
                 AS r(mailbox_id, day, want, day_limit, next_slot)
         WHERE r.want > 0 AND r.day_limit > 0
    ), slot_taken AS (
        UPDATE mailboxes m SET next_send_slot_at = r.next_slot
          FROM request r
         WHERE r.next_slot IS NOT NULL AND m.id = r.mailbox_id
           AND (m.next_send_slot_at IS NULL OR m.next_send_slot_at <= p_now)
        RETURNING m.id
    ), eligible AS (
        SELECT r.mailbox_id, r.day, r.day_limit,
               CASE WHEN r.next_slot IS NULL THEN r.want ELSE 1 END AS want
          FROM request r
         WHERE r.next_slot IS NULL OR r.mailbox_id IN (SELECT id FROM slot_taken)
    ), granted AS (
        -- In the SET list u.reserved is the row before this statement, so last_granted is
        -- exactly what this call added.
        INSERT INTO mailbox_daily_usage AS u (mailbox_id, day, reserved, day_limit, last_granted)
            SELECT e.mailbox_id, e.day, least(e.want, e.day_limit), e.day_limit,
                   least(e.want, e.day_limit)
              FROM eligible e ORDER BY e.mailbox_id
        ON CONFLICT (mailbox_id, day) DO UPDATE
            SET reserved = u.reserved + least(EXCLUDED.reserved, EXCLUDED.day_limit - u.reserved),
                last_granted = least(EXCLUDED.reserved, EXCLUDED.day_limit - u.reserved),
                day_limit = EXCLUDED.day_limit
          WHERE u.reserved < EXCLUDED.day_limit
        RETURNING u.mailbox_id, u.last_granted
    )
    SELECT mailbox_id, last_granted FROM granted;
$$ LANGUAGE sql;

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
