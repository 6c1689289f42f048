-- Statistics served from aggregates kept current by triggers, so GET /sequences/{id}/stats
-- reads a handful of rows however many events exist, and every writer (scheduler, workers,
-- tracker consumers) keeps them right without knowing about them.

-- Per step: each outcome counted once per message; opens and clicks once per message for
-- humans and once for bots.
CREATE TABLE step_stats (
    step_id        uuid PRIMARY KEY REFERENCES steps (id) ON DELETE CASCADE,
    sequence_id    uuid NOT NULL REFERENCES sequences (id) ON DELETE CASCADE,
    sent           bigint NOT NULL DEFAULT 0,
    failed         bigint NOT NULL DEFAULT 0,
    bounced        bigint NOT NULL DEFAULT 0,
    opened_human   bigint NOT NULL DEFAULT 0,
    opened_bot     bigint NOT NULL DEFAULT 0,
    clicked_human  bigint NOT NULL DEFAULT 0,
    clicked_bot    bigint NOT NULL DEFAULT 0,
    replied        bigint NOT NULL DEFAULT 0,
    unsubscribed   bigint NOT NULL DEFAULT 0,
    complained     bigint NOT NULL DEFAULT 0
);
CREATE INDEX step_stats_sequence_idx ON step_stats (sequence_id);

-- Per sequence: enrollments in total and by status.
CREATE TABLE sequence_stats (
    sequence_id   uuid PRIMARY KEY REFERENCES sequences (id) ON DELETE CASCADE,
    enrolled      bigint NOT NULL DEFAULT 0,
    active        bigint NOT NULL DEFAULT 0,
    paused        bigint NOT NULL DEFAULT 0,
    completed     bigint NOT NULL DEFAULT 0,
    replied       bigint NOT NULL DEFAULT 0,
    bounced       bigint NOT NULL DEFAULT 0,
    unsubscribed  bigint NOT NULL DEFAULT 0,
    stopped       bigint NOT NULL DEFAULT 0,
    failed        bigint NOT NULL DEFAULT 0
);

CREATE FUNCTION count_event() RETURNS trigger AS $$
DECLARE
    v_step uuid;
    v_sequence uuid;
    v_column text;
    v_repeat boolean;
BEGIN
    IF NEW.message_id IS NULL THEN
        RETURN NEW;
    END IF;
    SELECT m.step_id, e.sequence_id INTO v_step, v_sequence
      FROM messages m JOIN enrollments e ON e.id = m.enrollment_id
     WHERE m.id = NEW.message_id;
    IF v_step IS NULL THEN
        RETURN NEW;
    END IF;
    v_column := CASE NEW.event_type
        WHEN 'sent' THEN 'sent'
        WHEN 'failed' THEN 'failed'
        WHEN 'bounced' THEN 'bounced'
        WHEN 'opened' THEN CASE WHEN coalesce(NEW.is_bot, false) THEN 'opened_bot' ELSE 'opened_human' END
        WHEN 'clicked' THEN CASE WHEN coalesce(NEW.is_bot, false) THEN 'clicked_bot' ELSE 'clicked_human' END
        WHEN 'replied' THEN 'replied'
        WHEN 'unsubscribed' THEN 'unsubscribed'
        WHEN 'complained' THEN 'complained'
        ELSE NULL
    END;
    IF v_column IS NULL THEN
        RETURN NEW;
    END IF;
    SELECT EXISTS (
        SELECT 1 FROM events
         WHERE message_id = NEW.message_id AND event_type = NEW.event_type AND id <> NEW.id
           AND (NEW.event_type NOT IN ('opened', 'clicked')
                OR coalesce(is_bot, false) = coalesce(NEW.is_bot, false))
    ) INTO v_repeat;
    IF v_repeat THEN
        RETURN NEW;
    END IF;
    INSERT INTO step_stats (step_id, sequence_id) VALUES (v_step, v_sequence)
        ON CONFLICT (step_id) DO NOTHING;
    EXECUTE format('UPDATE step_stats SET %I = %I + 1 WHERE step_id = $1', v_column, v_column)
        USING v_step;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_count AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION count_event();

-- Enrollment counts move by statement, not by row: enrolling 100,000 contacts in one
-- INSERT updates each affected sequence_stats row once per status.
CREATE FUNCTION bump_sequence_stats(changes jsonb) RETURNS void AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM jsonb_to_recordset(changes)
             AS x(sequence_id uuid, status text, delta bigint, enrolled bigint) LOOP
        -- The sequence may be going away in this very statement (a cascade).
        INSERT INTO sequence_stats (sequence_id)
            SELECT r.sequence_id WHERE EXISTS (SELECT 1 FROM sequences WHERE id = r.sequence_id)
            ON CONFLICT (sequence_id) DO NOTHING;
        EXECUTE format(
            'UPDATE sequence_stats SET %I = %I + $1, enrolled = enrolled + $2 WHERE sequence_id = $3',
            r.status, r.status)
            USING r.delta, r.enrolled, r.sequence_id;
    END LOOP;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION count_enrollments_inserted() RETURNS trigger AS $$
BEGIN
    PERFORM bump_sequence_stats(coalesce((
        SELECT jsonb_agg(jsonb_build_object('sequence_id', sequence_id, 'status', status,
                                            'delta', n, 'enrolled', n))
          FROM (SELECT sequence_id, status, count(*) AS n FROM new_rows GROUP BY 1, 2) g
    ), '[]'::jsonb));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION count_enrollments_deleted() RETURNS trigger AS $$
BEGIN
    PERFORM bump_sequence_stats(coalesce((
        SELECT jsonb_agg(jsonb_build_object('sequence_id', sequence_id, 'status', status,
                                            'delta', -n, 'enrolled', -n))
          FROM (SELECT sequence_id, status, count(*) AS n FROM old_rows GROUP BY 1, 2) g
    ), '[]'::jsonb));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

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

CREATE TRIGGER enrollments_count_inserted AFTER INSERT ON enrollments
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_enrollments_inserted();
CREATE TRIGGER enrollments_count_deleted AFTER DELETE ON enrollments
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_enrollments_deleted();
CREATE TRIGGER enrollments_count_updated AFTER UPDATE ON enrollments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_enrollments_updated();

CREATE INDEX events_enrollment_time_idx ON events (enrollment_id, occurred_at);
CREATE INDEX messages_enrollment_idx ON messages (enrollment_id);
