-- The relay now deletes rows once Kafka acknowledged them, or keeps them published for
-- outbox.retention_seconds and then purges them oldest first: this index finds those.
CREATE INDEX outbox_published_idx ON outbox (published_at) WHERE status = 'published';
