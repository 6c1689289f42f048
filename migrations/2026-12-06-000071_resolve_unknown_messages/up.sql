-- A person's answer for a message whose fate was `unknown` (its data went out and no reply
-- came, or its worker died mid-send): `sent` (it was delivered: the enrollment moves on) or
-- `not_sent` (it is sent again as a retry of the same message). Kept on the row so the same
-- answer given again changes nothing; the latest answer when a retry became unknown again.
ALTER TABLE messages ADD COLUMN resolution text CHECK (resolution IN ('sent', 'not_sent'));
ALTER TABLE messages ADD COLUMN resolved_at timestamptz;

-- The workspace-wide listing (`GET /messages?status=unknown`) pages by id within a status.
DROP INDEX messages_workspace_status_idx;
CREATE INDEX messages_workspace_status_idx ON messages (workspace_id, status, id);

-- The audit of a resolution in the enrollment's timeline: who answered, and what.
ALTER TABLE events DROP CONSTRAINT events_event_type_check;
ALTER TABLE events ADD CONSTRAINT events_event_type_check CHECK (event_type IN (
    'sent', 'delivered', 'opened', 'clicked', 'replied', 'auto_replied',
    'bounced', 'soft_bounced', 'unsubscribed', 'complained', 'failed', 'unknown', 'held',
    'resolved'));
