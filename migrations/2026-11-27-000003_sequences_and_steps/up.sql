CREATE TABLE sequences (
    id                      uuid PRIMARY KEY,
    workspace_id            uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name                    text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status                  text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'active', 'paused', 'archived')),
    open_tracking_enabled   boolean NOT NULL DEFAULT false,
    click_tracking_enabled  boolean NOT NULL DEFAULT false,
    stop_on_reply           boolean NOT NULL DEFAULT true,
    unsubscribe_link        boolean NOT NULL DEFAULT true,
    tracking_domain         text,
    -- Sending window: ISO weekdays (1 = Monday) and local start/end times.
    send_days               smallint[] NOT NULL DEFAULT '{1,2,3,4,5}'
                            CHECK (send_days <@ '{1,2,3,4,5,6,7}'::smallint[] AND cardinality(send_days) > 0),
    window_start            time NOT NULL DEFAULT '09:00',
    window_end              time NOT NULL DEFAULT '17:00',
    -- IANA timezone of the window; used for contacts without one, or for all when
    -- use_contact_timezone is false.
    timezone                text NOT NULL DEFAULT 'UTC',
    use_contact_timezone    boolean NOT NULL DEFAULT true,
    business_days_only      boolean NOT NULL DEFAULT false,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CHECK (window_start < window_end)
);
CREATE INDEX sequences_workspace_idx ON sequences (workspace_id, id);
CREATE TRIGGER sequences_updated_at BEFORE UPDATE ON sequences
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE steps (
    id                    uuid PRIMARY KEY,
    sequence_id           uuid NOT NULL REFERENCES sequences (id) ON DELETE CASCADE,
    step_order            integer NOT NULL CHECK (step_order >= 1),
    subject               text NOT NULL,
    content               text NOT NULL,
    -- Wait after the previous step's send; the three parts add up.
    wait_days             integer NOT NULL DEFAULT 0 CHECK (wait_days >= 0),
    wait_hours            integer NOT NULL DEFAULT 0 CHECK (wait_hours >= 0),
    wait_minutes          integer NOT NULL DEFAULT 0 CHECK (wait_minutes >= 0),
    thread_with_previous  boolean NOT NULL DEFAULT false,
    -- A/B variants: [{"subject": ..., "content": ..., "weight": n}]; empty means subject/content only.
    variants              jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(variants) = 'array'),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    -- Deferrable so a reorder can swap positions inside one transaction.
    CONSTRAINT steps_sequence_order_key UNIQUE (sequence_id, step_order) DEFERRABLE INITIALLY IMMEDIATE
);
CREATE TRIGGER steps_updated_at BEFORE UPDATE ON steps
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- The rotation pool of mailboxes a sequence may send from.
CREATE TABLE sequence_mailboxes (
    sequence_id  uuid NOT NULL REFERENCES sequences (id) ON DELETE CASCADE,
    mailbox_id   uuid NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sequence_id, mailbox_id)
);
CREATE INDEX sequence_mailboxes_mailbox_idx ON sequence_mailboxes (mailbox_id);
