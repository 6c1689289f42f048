-- A contact's progress through a sequence (the seed's sequence_contacts). Owned by the scheduler.
CREATE TABLE enrollments (
    id                  uuid PRIMARY KEY,
    workspace_id        uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    sequence_id         uuid NOT NULL REFERENCES sequences (id) ON DELETE CASCADE,
    contact_id          uuid NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    -- Chosen for the first step, then kept so the whole thread stays in one inbox.
    mailbox_id          uuid REFERENCES mailboxes (id) ON DELETE SET NULL,
    -- step_order of the next step to send.
    current_step        integer NOT NULL DEFAULT 1 CHECK (current_step >= 1),
    next_send_at        timestamptz,
    status              text NOT NULL DEFAULT 'active' CHECK (status IN (
                            'active', 'paused', 'completed', 'replied', 'bounced',
                            'unsubscribed', 'stopped', 'failed')),
    stop_reason         text,
    last_sent_at        timestamptz,
    completed_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (sequence_id, contact_id)
);
-- The scheduler's hot query: due active enrollments in time order.
CREATE INDEX enrollments_due_idx ON enrollments (next_send_at) WHERE status = 'active';
CREATE INDEX enrollments_contact_idx ON enrollments (contact_id);
CREATE INDEX enrollments_workspace_sequence_idx ON enrollments (workspace_id, sequence_id, status);
CREATE TRIGGER enrollments_updated_at BEFORE UPDATE ON enrollments
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- One email: one row per enrollment and step (the seed's email_queues). The UNIQUE pair is what
-- makes creating a step's email twice impossible, whatever runs concurrently.
CREATE TABLE messages (
    id                  uuid PRIMARY KEY,
    workspace_id        uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    enrollment_id       uuid NOT NULL REFERENCES enrollments (id) ON DELETE CASCADE,
    step_id             uuid NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    step_order          integer NOT NULL,
    contact_id          uuid NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    mailbox_id          uuid NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    -- Index into the step's variants; NULL when the step has none.
    variant_index       integer,
    status              text NOT NULL DEFAULT 'queued' CHECK (status IN (
                            'queued', 'sending', 'sent', 'failed', 'bounced', 'unknown', 'cancelled')),
    attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- RFC 5322 Message-ID, assigned before the first attempt so retries reuse it.
    message_id_header   text UNIQUE,
    subject             text,
    scheduled_at        timestamptz NOT NULL,
    -- At-most-once claim of the SMTP conversation by one worker.
    worker_id           text,
    lease_expires_at    timestamptz,
    sent_at             timestamptz,
    smtp_response       text,
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (enrollment_id, step_id)
);
CREATE INDEX messages_mailbox_sent_idx ON messages (mailbox_id, sent_at);
CREATE INDEX messages_workspace_status_idx ON messages (workspace_id, status);
CREATE TRIGGER messages_updated_at BEFORE UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
