DROP INDEX outbox_published_idx;
