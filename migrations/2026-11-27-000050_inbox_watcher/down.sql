ALTER TABLE sequences DROP COLUMN stop_on_auto_reply;
DROP TABLE inbox_watches;
