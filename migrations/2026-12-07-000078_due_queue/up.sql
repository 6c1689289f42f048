-- A narrow due queue: one small row per enrollment waiting for its next step, kept by
-- triggers from `enrollments` (next_send_at and status stay the truth, whoever writes them).
-- The dispatcher's claim deletes these rows instead of taking the wide enrollment row out of
-- a due index (a non-HOT update writing five index entries per step); with that index gone,
-- every change of enrollments.next_send_at can stay a HOT update.
--
-- Only enrollments of active sequences are queued: pausing a sequence takes its rows out,
-- activating it puts them back, so idle rounds never walk the due steps of paused sequences.
CREATE TABLE due_enrollments (
    enrollment_id  uuid PRIMARY KEY REFERENCES enrollments (id) ON DELETE CASCADE,
    due_at         timestamptz NOT NULL
);
CREATE INDEX due_enrollments_due_idx ON due_enrollments (due_at);

INSERT INTO due_enrollments (enrollment_id, due_at)
SELECT e.id, e.next_send_at
  FROM enrollments e JOIN sequences s ON s.id = e.sequence_id
 WHERE e.status = 'active' AND e.next_send_at IS NOT NULL AND s.status = 'active';

DROP INDEX enrollments_due_idx;
-- Room on each page for the new versions of the rows the scheduler updates, so they stay HOT.
ALTER TABLE enrollments SET (fillfactor = 85);

-- New enrollments: set-based, over the transition table the insert statement builds anyway.
CREATE FUNCTION queue_inserted_enrollments() RETURNS trigger AS $$
BEGIN
    INSERT INTO due_enrollments (enrollment_id, due_at)
    SELECT n.id, n.next_send_at FROM new_rows n
     WHERE n.status = 'active' AND n.next_send_at IS NOT NULL
    ON CONFLICT (enrollment_id) DO UPDATE SET due_at = EXCLUDED.due_at;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER enrollments_queue_inserted AFTER INSERT ON enrollments
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queue_inserted_enrollments();

-- Changed enrollments: the WHEN clause (evaluated without calling the function) lets through
-- only a new send time, a return to active, or leaving active. The claim itself (clearing
-- next_send_at of an active row whose queue row it deleted) passes none of them.
CREATE FUNCTION queue_changed_enrollment() RETURNS trigger AS $$
BEGIN
    IF NEW.status = 'active' AND NEW.next_send_at IS NOT NULL THEN
        INSERT INTO due_enrollments (enrollment_id, due_at) VALUES (NEW.id, NEW.next_send_at)
        ON CONFLICT (enrollment_id) DO UPDATE SET due_at = EXCLUDED.due_at;
    ELSE
        DELETE FROM due_enrollments WHERE enrollment_id = NEW.id;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER enrollments_queue_changed AFTER UPDATE OF next_send_at, status ON enrollments
    FOR EACH ROW
    WHEN ((NEW.status = 'active' AND NEW.next_send_at IS NOT NULL
           AND (OLD.next_send_at IS DISTINCT FROM NEW.next_send_at OR OLD.status <> 'active'))
          OR (OLD.status = 'active' AND NEW.status <> 'active'))
    EXECUTE FUNCTION queue_changed_enrollment();

-- A sequence leaving or entering `active` takes its enrollments out of the queue or puts
-- them back (over the UNIQUE (sequence_id, contact_id) index).
CREATE FUNCTION queue_sequence_enrollments() RETURNS trigger AS $$
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
CREATE TRIGGER sequences_queue_enrollments AFTER UPDATE OF status ON sequences
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status AND (OLD.status = 'active' OR NEW.status = 'active'))
    EXECUTE FUNCTION queue_sequence_enrollments();
