DELETE FROM events WHERE event_type = 'held';
ALTER TABLE events DROP CONSTRAINT events_event_type_check;
ALTER TABLE events ADD CONSTRAINT events_event_type_check CHECK (event_type IN (
    'sent', 'delivered', 'opened', 'clicked', 'replied', 'auto_replied',
    'bounced', 'soft_bounced', 'unsubscribed', 'complained', 'failed', 'unknown'));
