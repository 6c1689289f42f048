-- The API's `step_order` is the client's ordering key, kept as sent: non-negative, unique
-- among a sequence's live steps, 0 allowed (the seed numbers steps from 0), gaps allowed.
-- The order of the keys gives the steps' positions; `step_order` stays the position (1..n),
-- which enrollments (`current_step`) and messages refer to.
ALTER TABLE steps ADD COLUMN order_key integer;
UPDATE steps SET order_key = step_order;
ALTER TABLE steps ALTER COLUMN order_key SET NOT NULL;
ALTER TABLE steps ADD CONSTRAINT steps_order_key_check CHECK (order_key >= 0);
CREATE UNIQUE INDEX steps_live_client_order_key ON steps (sequence_id, order_key)
    WHERE deleted_at IS NULL;
