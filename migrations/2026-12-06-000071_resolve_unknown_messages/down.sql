DELETE FROM events WHERE event_type = 'resolved';
ALTER TABLE events DROP CONSTRAINT events_event_type_check;
ALTER TABLE events ADD CONSTRAINT events_event_type_check CHECK (event_type IN (
    'sent', 'delivered', 'opened', 'clicked', 'replied', 'auto_replied',
    'bounced', 'soft_bounced', 'unsubscribed', 'complained', 'failed', 'unknown', 'held'));

DROP INDEX messages_workspace_status_idx;
CREATE INDEX messages_workspace_status_idx ON messages (workspace_id, status);

ALTER TABLE messages DROP COLUMN resolved_at;
ALTER TABLE messages DROP COLUMN resolution;
