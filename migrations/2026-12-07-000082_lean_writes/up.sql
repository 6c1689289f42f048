-- Fewer writes per email: the per-row key checks of `events` and `due_enrollments`.

-- `events` kept four keys, checked for every row the scheduler inserts (an SPI query and a
-- key-share row lock, a WAL record, each): about a fifth of the events insert. Their
-- guarantee holds without them. Events are written only under a lock of their enrollment:
-- the scheduler's batches and exhausted retries hold it FOR UPDATE (`lock_enrollments`), a
-- resolution FOR KEY SHARE, and each event's workspace, contact and message are those of
-- that enrollment (its message found by id and enrollment under that lock, the retry's and
-- the resolution's row-locked). So a delete that reaches the event's enrollment (of the
-- enrollment, its contact, sequence or workspace: all cascade into `enrollments`) waits for
-- the writer, and its triggers below, which run after the cascades as statements of their
-- own, see the event. Messages deleted without their enrollment (with a step or a mailbox)
-- have their enrollments key-share-locked first, which waits for a writer the same way (and
-- a writer that comes later waits for the delete, then no longer finds the message). What
-- the ON DELETE actions did, the statement triggers do, by set over the deleted rows.
ALTER TABLE events DROP CONSTRAINT events_workspace_id_fkey;
ALTER TABLE events DROP CONSTRAINT events_message_id_fkey;
ALTER TABLE events DROP CONSTRAINT events_enrollment_id_fkey;
ALTER TABLE events DROP CONSTRAINT events_contact_id_fkey;

CREATE FUNCTION delete_events_of_workspaces() RETURNS trigger AS $$
BEGIN
    DELETE FROM events e USING gone g WHERE e.workspace_id = g.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER workspaces_delete_events AFTER DELETE ON workspaces
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION delete_events_of_workspaces();

CREATE FUNCTION unlink_events_of_messages() RETURNS trigger AS $$
BEGIN
    UPDATE events e SET message_id = NULL FROM gone g WHERE e.message_id = g.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER messages_unlink_events AFTER DELETE ON messages
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION unlink_events_of_messages();

CREATE FUNCTION unlink_events_of_enrollments() RETURNS trigger AS $$
BEGIN
    UPDATE events e SET enrollment_id = NULL FROM gone g WHERE e.enrollment_id = g.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER enrollments_unlink_events AFTER DELETE ON enrollments
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION unlink_events_of_enrollments();

-- No index leads with events.contact_id (the key's SET NULL scanned the table per contact
-- row; this scans it once per statement).
CREATE FUNCTION unlink_events_of_contacts() RETURNS trigger AS $$
BEGIN
    UPDATE events e SET contact_id = NULL FROM gone g WHERE e.contact_id = g.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER contacts_unlink_events AFTER DELETE ON contacts
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION unlink_events_of_contacts();

-- Messages deleted with a step or a mailbox (migration 000081): their enrollments are
-- key-share-locked first (id order), before their messages are (the order of the scheduler
-- and the dispatcher: enrollment, then message), so an event being written for one of them
-- commits before the messages go and `messages_unlink_events` then sees it. An enrollment
-- this transaction deletes too (a sequence or workspace delete) is not visible, not locked.
CREATE OR REPLACE FUNCTION delete_messages_of_steps() RETURNS trigger AS $$
BEGIN
    PERFORM 1 FROM enrollments e
      WHERE e.id IN (SELECT m.enrollment_id FROM messages m JOIN gone g ON m.step_id = g.id)
      ORDER BY e.id
        FOR KEY SHARE OF e;
    DELETE FROM messages m USING gone g WHERE m.step_id = g.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION delete_messages_of_mailboxes() RETURNS trigger AS $$
BEGIN
    PERFORM 1 FROM enrollments e
      WHERE e.id IN (SELECT m.enrollment_id FROM messages m JOIN gone g ON m.mailbox_id = g.id)
      ORDER BY e.id
        FOR KEY SHARE OF e;
    DELETE FROM messages m USING gone g WHERE m.mailbox_id = g.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- `due_enrollments` rows are inserted only by triggers: for enrollments inserted or updated
-- by the same statement (rows it holds), and for the enrollments of a sequence entering
-- `active`, which now key-share-locks them as the key check did (a concurrent delete is
-- waited for, then its rows are skipped). Deleting an enrollment deletes its queue row.
ALTER TABLE due_enrollments DROP CONSTRAINT due_enrollments_enrollment_id_fkey;

CREATE FUNCTION dequeue_deleted_enrollments() RETURNS trigger AS $$
BEGIN
    DELETE FROM due_enrollments d USING gone g WHERE d.enrollment_id = g.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER enrollments_dequeue_deleted AFTER DELETE ON enrollments
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION dequeue_deleted_enrollments();

CREATE OR REPLACE FUNCTION queue_sequence_enrollments() RETURNS trigger AS $$
BEGIN
    IF NEW.status = 'active' THEN
        INSERT INTO due_enrollments (enrollment_id, due_at)
        SELECT e.id, e.next_send_at FROM enrollments e
         WHERE e.sequence_id = NEW.id AND e.status = 'active' AND e.next_send_at IS NOT NULL
           FOR KEY SHARE OF e
        ON CONFLICT (enrollment_id) DO UPDATE SET due_at = EXCLUDED.due_at;
    ELSE
        DELETE FROM due_enrollments d USING enrollments e
         WHERE e.sequence_id = NEW.id AND d.enrollment_id = e.id;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
