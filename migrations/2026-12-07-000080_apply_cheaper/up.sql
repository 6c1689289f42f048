-- The due queue follows changed enrollments by statement, not by row. The row trigger ran a
-- PL/pgSQL call and an `INSERT ... ON CONFLICT` for every enrollment a `sent` advanced (500
-- per batch of events); now each UPDATE of enrollments queues, re-times or removes all its
-- changed rows with one statement over its transition tables. What is queued is unchanged:
-- a row gets (or keeps, re-timed) its queue row when it is active with a send time that is
-- new or newly active; it loses it when it leaves active. Other changes touch nothing, and
-- a statement that changes no row returns at once.
DROP TRIGGER enrollments_queue_changed ON enrollments;
DROP FUNCTION queue_changed_enrollment();

-- Planned at each run (EXECUTE), like count_events: a plan kept from a connection's first
-- statement of a few rows would join the transition tables badly for a statement of 500.
CREATE FUNCTION queue_changed_enrollments() RETURNS trigger AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows) THEN
        RETURN NULL;
    END IF;
    EXECUTE $queue$
    WITH changed AS MATERIALIZED (
        SELECT n.id, n.next_send_at,
               n.status = 'active' AND n.next_send_at IS NOT NULL AS due
          FROM new_rows n JOIN old_rows o ON o.id = n.id
         WHERE (n.status = 'active' AND n.next_send_at IS NOT NULL
                AND (o.next_send_at IS DISTINCT FROM n.next_send_at OR o.status <> 'active'))
            OR (o.status = 'active' AND n.status <> 'active')
    ), queued AS (
        INSERT INTO due_enrollments (enrollment_id, due_at)
        SELECT c.id, c.next_send_at FROM changed c WHERE c.due
         ORDER BY c.id
        ON CONFLICT (enrollment_id) DO UPDATE SET due_at = EXCLUDED.due_at
    )
    DELETE FROM due_enrollments d USING changed c
     WHERE NOT c.due AND d.enrollment_id = c.id
    $queue$;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER enrollments_queue_changed AFTER UPDATE ON enrollments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queue_changed_enrollments();
