DROP TRIGGER enrollments_queue_changed ON enrollments;
DROP FUNCTION queue_changed_enrollments();

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
