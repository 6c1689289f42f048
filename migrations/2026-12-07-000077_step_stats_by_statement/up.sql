-- Step statistics move by statement, not by row. The row trigger `count_event` updated the one
-- `step_stats` row of a step once per event: a batch of 500 events of one step made 500 row
-- versions of it in one transaction, each update walking to the newest. Now each INSERT into
-- events updates each affected step's row once, with the sum of what it counts.
--
-- What counts is unchanged: each outcome once per message (opens and clicks once for humans
-- and once for bots), into the column of the outcome; events of a message or step that no
-- longer exists count nothing. A statement that brings a message's first rows of an outcome
-- counts that outcome once, however many of them it brings; one that brings later rows counts
-- nothing (the row trigger counted nothing for two first rows in one statement: each saw the
-- other).
DROP TRIGGER events_count ON events;
DROP FUNCTION count_event();

-- The statement is planned at each run (EXECUTE), not once per connection: a plan made while
-- `events` was nearly empty would scan all of it for every message once it is not.
CREATE FUNCTION count_events() RETURNS trigger AS $$
BEGIN
    EXECUTE $count$
    WITH outcomes AS (
        -- The statement's rows that count, by message and column.
        SELECT n.message_id, n.event_type,
               CASE n.event_type
                   WHEN 'opened' THEN CASE WHEN coalesce(n.is_bot, false)
                                           THEN 'opened_bot' ELSE 'opened_human' END
                   WHEN 'clicked' THEN CASE WHEN coalesce(n.is_bot, false)
                                            THEN 'clicked_bot' ELSE 'clicked_human' END
                   ELSE n.event_type
               END AS col,
               n.event_type IN ('opened', 'clicked') AND coalesce(n.is_bot, false) AS bot,
               count(*) AS rows
          FROM new_rows n
         WHERE n.message_id IS NOT NULL
           AND n.event_type IN ('sent', 'failed', 'bounced', 'opened', 'clicked', 'replied',
                                'unsubscribed', 'complained')
         GROUP BY 1, 2, 3, 4
    ), firsts AS (
        -- Only the first rows of an outcome count: the events table holds no others (every
        -- row of the statement is in it already).
        SELECT o.message_id, o.col
          FROM outcomes o
         WHERE o.rows = (SELECT count(*) FROM events e
                          WHERE e.message_id = o.message_id AND e.event_type = o.event_type
                            AND (o.event_type NOT IN ('opened', 'clicked')
                                 OR coalesce(e.is_bot, false) = o.bot))
    ), by_step AS (
        SELECT m.step_id,
               count(*) FILTER (WHERE f.col = 'sent') AS sent,
               count(*) FILTER (WHERE f.col = 'failed') AS failed,
               count(*) FILTER (WHERE f.col = 'bounced') AS bounced,
               count(*) FILTER (WHERE f.col = 'opened_human') AS opened_human,
               count(*) FILTER (WHERE f.col = 'opened_bot') AS opened_bot,
               count(*) FILTER (WHERE f.col = 'clicked_human') AS clicked_human,
               count(*) FILTER (WHERE f.col = 'clicked_bot') AS clicked_bot,
               count(*) FILTER (WHERE f.col = 'replied') AS replied,
               count(*) FILTER (WHERE f.col = 'unsubscribed') AS unsubscribed,
               count(*) FILTER (WHERE f.col = 'complained') AS complained
          FROM firsts f
          JOIN messages m ON m.id = f.message_id
         WHERE m.step_id IS NOT NULL
         GROUP BY m.step_id
    )
    -- A message's step is of its enrollment's sequence (what the row trigger read).
    INSERT INTO step_stats AS s (step_id, sequence_id, sent, failed, bounced, opened_human,
                                 opened_bot, clicked_human, clicked_bot, replied, unsubscribed,
                                 complained)
    SELECT b.step_id, st.sequence_id, b.sent, b.failed, b.bounced, b.opened_human,
           b.opened_bot, b.clicked_human, b.clicked_bot, b.replied, b.unsubscribed,
           b.complained
      FROM by_step b JOIN steps st ON st.id = b.step_id
     ORDER BY b.step_id
    ON CONFLICT (step_id) DO UPDATE SET
        sent = s.sent + EXCLUDED.sent,
        failed = s.failed + EXCLUDED.failed,
        bounced = s.bounced + EXCLUDED.bounced,
        opened_human = s.opened_human + EXCLUDED.opened_human,
        opened_bot = s.opened_bot + EXCLUDED.opened_bot,
        clicked_human = s.clicked_human + EXCLUDED.clicked_human,
        clicked_bot = s.clicked_bot + EXCLUDED.clicked_bot,
        replied = s.replied + EXCLUDED.replied,
        unsubscribed = s.unsubscribed + EXCLUDED.unsubscribed,
        complained = s.complained + EXCLUDED.complained
    $count$;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_count AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_events();
