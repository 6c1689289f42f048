-- What happened to messages (the seed's email_events). `id` is the Kafka envelope id, so a
-- replayed event inserts nothing (ON CONFLICT DO NOTHING).
CREATE TABLE events (
    id             uuid PRIMARY KEY,
    workspace_id   uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    message_id     uuid REFERENCES messages (id) ON DELETE SET NULL,
    enrollment_id  uuid REFERENCES enrollments (id) ON DELETE SET NULL,
    contact_id     uuid REFERENCES contacts (id) ON DELETE SET NULL,
    event_type     text NOT NULL CHECK (event_type IN (
                       'sent', 'delivered', 'opened', 'clicked', 'replied', 'auto_replied',
                       'bounced', 'soft_bounced', 'unsubscribed', 'complained', 'failed', 'unknown')),
    occurred_at    timestamptz NOT NULL,
    -- Tracker classification of opens and clicks; NULL for other events.
    is_bot         boolean,
    bot_reason     text,
    url            text,
    user_agent     text,
    -- Truncated or hashed per the workspace's privacy setting, never the raw address by default.
    client_ip      text,
    payload        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_message_idx ON events (message_id);
CREATE INDEX events_workspace_type_time_idx ON events (workspace_id, event_type, occurred_at);

-- Addresses never to be emailed again by a workspace, whatever sequence enrolls them.
CREATE TABLE suppressions (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email         text NOT NULL CHECK (email = lower(email)),
    reason        text NOT NULL CHECK (reason IN ('unsubscribed', 'bounced', 'complained', 'manual')),
    source        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, email)
);

-- Units of a mailbox's daily limit reserved per local day (the seed's mailbox_daily_counts).
-- Reserved with UPDATE ... SET reserved = reserved + 1 WHERE reserved < limit, never read-then-write.
CREATE TABLE mailbox_daily_usage (
    mailbox_id  uuid NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    day         date NOT NULL,
    reserved    integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mailbox_id, day)
);
CREATE TRIGGER mailbox_daily_usage_updated_at BEFORE UPDATE ON mailbox_daily_usage
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Transactional outbox: Kafka records written in the same transaction as the state they
-- announce, published later by a relay that claims pending rows with SKIP LOCKED.
CREATE TABLE outbox (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic         text NOT NULL,
    message_key   text,
    payload       jsonb NOT NULL,
    headers       jsonb NOT NULL DEFAULT '{}'::jsonb,
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'published')),
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE status = 'pending';
