-- Steps of sequences that have run are removed softly: their messages and events stay as
-- history. Positions stay unique among live steps only, so a removed step's position can be
-- reused; the partial index replaces the deferrable constraint (partial indexes cannot be
-- deferred, so moves renumber in two passes).
ALTER TABLE steps ADD COLUMN deleted_at timestamptz;
ALTER TABLE steps DROP CONSTRAINT steps_sequence_order_key;
CREATE UNIQUE INDEX steps_live_order_key ON steps (sequence_id, step_order) WHERE deleted_at IS NULL;
