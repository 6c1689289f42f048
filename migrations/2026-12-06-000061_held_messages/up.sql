-- A message the sender worker would not send because a template variable had no value and
-- no fallback: the scheduler records a `held` event and pauses the enrollment with the
-- reason `missing_variable: <name>`; resuming it sends the step then.
ALTER TABLE events DROP CONSTRAINT events_event_type_check;
ALTER TABLE events ADD CONSTRAINT events_event_type_check CHECK (event_type IN (
    'sent', 'delivered', 'opened', 'clicked', 'replied', 'auto_replied',
    'bounced', 'soft_bounced', 'unsubscribed', 'complained', 'failed', 'unknown', 'held'));
