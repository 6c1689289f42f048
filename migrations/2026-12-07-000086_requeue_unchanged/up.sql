-- Queueing an enrollment that is queued already at the same time changes nothing. The
-- upserts into `due_enrollments` rewrote such a row anyway (a new row version, its index
-- entries, WAL): activating a sequence whose enrollments were queued when enrolled rewrote
-- every one of them, 50,000 for 50,000 contacts. Now an upsert leaves a row whose `due_at`
-- is already right alone (`ON CONFLICT ... DO UPDATE ... WHERE`; the row is still locked,
-- as before, so concurrent writers wait as they did). What is queued, and when, is
-- unchanged.

CREATE OR REPLACE FUNCTION queue_inserted_enrollments() RETURNS trigger AS $$
BEGIN
    INSERT INTO due_enrollments (enrollment_id, due_at)
    SELECT n.id, n.next_send_at FROM new_rows n
     WHERE n.status = 'active' AND n.next_send_at IS NOT NULL
    ON CONFLICT (enrollment_id) DO UPDATE SET due_at = EXCLUDED.due_at
     WHERE due_enrollments.due_at IS DISTINCT FROM EXCLUDED.due_at;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION queue_changed_enrollments() RETURNS trigger AS $$
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
         WHERE due_enrollments.due_at IS DISTINCT FROM EXCLUDED.due_at
    )
    DELETE FROM due_enrollments d USING changed c
     WHERE NOT c.due AND d.enrollment_id = c.id
    $queue$;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION queue_sequence_enrollments() RETURNS trigger AS $$
BEGIN
    IF NEW.status = 'active' THEN
        INSERT INTO due_enrollments (enrollment_id, due_at)
        SELECT e.id, e.next_send_at FROM enrollments e
         WHERE e.sequence_id = NEW.id AND e.status = 'active' AND e.next_send_at IS NOT NULL
           FOR KEY SHARE OF e
        ON CONFLICT (enrollment_id) DO UPDATE SET due_at = EXCLUDED.due_at
         WHERE due_enrollments.due_at IS DISTINCT FROM EXCLUDED.due_at;
    ELSE
        DELETE FROM due_enrollments d USING enrollments e
         WHERE e.sequence_id = NEW.id AND d.enrollment_id = e.id;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
