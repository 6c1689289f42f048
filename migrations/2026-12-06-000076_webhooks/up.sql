-- Outgoing webhooks (Standard Webhooks): the endpoints a workspace registered, each event's
-- delivery to each endpoint, and every attempt of a delivery.

CREATE TABLE webhook_endpoints (
    id                          uuid PRIMARY KEY,
    workspace_id                uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    url                         text NOT NULL,
    description                 text,
    -- The event types sent to it; empty: all of them.
    event_types                 text[] NOT NULL DEFAULT '{}',
    enabled                     boolean NOT NULL DEFAULT true,
    -- Why the platform disabled it (410 Gone, failing for days); NULL when a person did or
    -- when it is enabled.
    disabled_reason             text,
    -- The signing secret (`whsec_...`), encrypted like mailbox passwords (`crate::crypto`).
    secret_encrypted            bytea NOT NULL,
    -- After a rotation the previous secret signs too, until `previous_secret_expires_at`.
    previous_secret_encrypted   bytea,
    previous_secret_expires_at  timestamptz,
    -- Since when every delivery to it has failed (NULL after a success).
    failing_since               timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    CHECK ((previous_secret_encrypted IS NULL) = (previous_secret_expires_at IS NULL))
);
CREATE INDEX webhook_endpoints_workspace_idx ON webhook_endpoints (workspace_id, id);
CREATE TRIGGER webhook_endpoints_updated_at BEFORE UPDATE ON webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- One event for one endpoint. Its id, as `msg_<id>`, is the `webhook-id` header of every
-- attempt, so receivers deduplicate; (endpoint, event) is unique, so an event fanned out
-- twice is delivered once.
CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY,
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    workspace_id     uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    event_id         uuid NOT NULL,
    event_type       text NOT NULL,
    -- The request body as sent (`{"type", "timestamp", "data"}`).
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz,
    occurred_at      timestamptz NOT NULL,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, id DESC);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';

CREATE TABLE webhook_attempts (
    id             uuid PRIMARY KEY,
    delivery_id    uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at   timestamptz NOT NULL,
    -- NULL when no answer came (refused, timed out).
    status_code    integer,
    latency_ms     integer NOT NULL CHECK (latency_ms >= 0),
    error          text,
    -- The first kilobyte of the answer's body.
    response_body  text
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, attempted_at);
