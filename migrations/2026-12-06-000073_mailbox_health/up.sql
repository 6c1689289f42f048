-- Mailbox health: automatic re-checks of mailboxes in `error`, and the reputation guard's
-- thresholds.
--
-- `next_check_at` is when the sender worker next re-checks a mailbox in `error` (NULL: not
-- scheduled yet; the worker schedules it `sender_worker.mailbox_recheck_initial_seconds`
-- ahead), `check_failures` the re-checks that failed since it entered `error` (the backoff
-- doubles with each). Any change of status starts over: a mailbox entering `error` gets a
-- fresh schedule, one leaving it needs none.
ALTER TABLE mailboxes
    ADD COLUMN next_check_at timestamptz,
    ADD COLUMN check_failures integer NOT NULL DEFAULT 0 CHECK (check_failures >= 0),
    -- The reputation guard pauses the mailbox when the hard bounces among its last 50 sends,
    -- or the spam complaints among its last 200, divided by max(sends, window), exceed these.
    ADD COLUMN max_bounce_rate double precision NOT NULL DEFAULT 0.05
        CHECK (max_bounce_rate >= 0 AND max_bounce_rate <= 1),
    ADD COLUMN max_complaint_rate double precision NOT NULL DEFAULT 0.003
        CHECK (max_complaint_rate >= 0 AND max_complaint_rate <= 1);

CREATE FUNCTION reset_mailbox_check() RETURNS trigger AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        NEW.next_check_at := NULL;
        NEW.check_failures := 0;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER mailboxes_reset_check BEFORE UPDATE OF status ON mailboxes
    FOR EACH ROW EXECUTE FUNCTION reset_mailbox_check();

-- The re-check loop's claim: mailboxes in `error` by the time of their next check.
CREATE INDEX mailboxes_recheck_idx ON mailboxes (next_check_at) WHERE status = 'error';

-- The reputation guard's windows: a mailbox's latest sends (`sent` or `bounced`), newest
-- first by id (UUIDv7, in dispatch order).
CREATE INDEX messages_mailbox_sends_idx ON messages (mailbox_id, id DESC)
    WHERE status IN ('sent', 'bounced');

-- A message whose mailbox could not send it (paused, in `error` or disabled) waits as
-- `retrying` without a time (`retry_at` NULL), so it neither uses up its retries nor is
-- dispatched to a mailbox that would refuse it again. When the mailbox is `active` again,
-- its waiting messages become due at once.
CREATE INDEX messages_waiting_for_mailbox_idx ON messages (mailbox_id)
    WHERE status = 'retrying' AND retry_at IS NULL;

CREATE FUNCTION release_waiting_messages() RETURNS trigger AS $$
BEGIN
    UPDATE messages SET retry_at = scheduled_at
     WHERE mailbox_id = NEW.id AND status = 'retrying' AND retry_at IS NULL;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER mailboxes_release_waiting_messages AFTER UPDATE OF status ON mailboxes
    FOR EACH ROW WHEN (NEW.status = 'active' AND OLD.status IS DISTINCT FROM 'active')
    EXECUTE FUNCTION release_waiting_messages();
