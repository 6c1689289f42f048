DROP TABLE outbox;
DROP TABLE mailbox_daily_usage;
DROP TABLE suppressions;
DROP TABLE events;
