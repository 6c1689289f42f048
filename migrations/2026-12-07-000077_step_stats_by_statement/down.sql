DROP TRIGGER events_count ON events;
DROP FUNCTION count_events();

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
