DELETE FROM steps WHERE deleted_at IS NOT NULL;
DROP INDEX steps_live_order_key;
ALTER TABLE steps ADD CONSTRAINT steps_sequence_order_key
    UNIQUE (sequence_id, step_order) DEFERRABLE INITIALLY IMMEDIATE;
ALTER TABLE steps DROP COLUMN deleted_at;
