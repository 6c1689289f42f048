-- A sending mailbox connected by a customer. Passwords are encrypted by the application
-- (AEAD, key from config) before they reach this table; the database never sees plaintext.
CREATE TABLE mailboxes (
    id                        uuid PRIMARY KEY,
    workspace_id              uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email                     text NOT NULL,
    display_name              text,
    smtp_host                 text NOT NULL,
    smtp_port                 integer NOT NULL CHECK (smtp_port BETWEEN 1 AND 65535),
    smtp_security             text NOT NULL DEFAULT 'starttls' CHECK (smtp_security IN ('none', 'starttls', 'tls')),
    smtp_username             text,
    smtp_password_encrypted   bytea,
    imap_host                 text,
    imap_port                 integer CHECK (imap_port BETWEEN 1 AND 65535),
    imap_security             text CHECK (imap_security IN ('none', 'starttls', 'tls')),
    imap_username             text,
    imap_password_encrypted   bytea,
    -- Sends allowed per local day (in `timezone`); the scheduler never reserves beyond it.
    daily_limit               integer NOT NULL DEFAULT 30 CHECK (daily_limit > 0),
    -- Warmup ramp: the day's limit is min(daily_limit, start + increase * days since warmup_started_on).
    warmup_enabled            boolean NOT NULL DEFAULT false,
    warmup_start_limit        integer NOT NULL DEFAULT 5 CHECK (warmup_start_limit > 0),
    warmup_daily_increase     integer NOT NULL DEFAULT 2 CHECK (warmup_daily_increase >= 0),
    warmup_started_on         date,
    -- Spacing between two sends of this mailbox: min_interval_seconds plus up to max_jitter_seconds.
    min_interval_seconds      integer NOT NULL DEFAULT 120 CHECK (min_interval_seconds >= 0),
    max_jitter_seconds        integer NOT NULL DEFAULT 60 CHECK (max_jitter_seconds >= 0),
    timezone                  text NOT NULL DEFAULT 'UTC',
    status                    text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'error', 'disabled')),
    status_reason             text,
    last_sent_at              timestamptz,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, email),
    -- IMAP settings come as a whole or not at all.
    CHECK ((imap_host IS NULL) = (imap_port IS NULL))
);
CREATE TRIGGER mailboxes_updated_at BEFORE UPDATE ON mailboxes
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- A prospect. `email` is stored lower-cased by the application, so the UNIQUE constraint is
-- case-insensitive in effect.
CREATE TABLE contacts (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email         text NOT NULL CHECK (email = lower(email) AND position('@' IN email) > 1),
    first_name    text,
    last_name     text,
    company       text,
    title         text,
    -- IANA name; NULL means "use the sequence's timezone".
    timezone      text,
    attributes    jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(attributes) = 'object'),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'unsubscribed', 'bounced', 'complained')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, email)
);
CREATE TRIGGER contacts_updated_at BEFORE UPDATE ON contacts
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
