DROP INDEX steps_live_client_order_key;
ALTER TABLE steps DROP COLUMN order_key;
