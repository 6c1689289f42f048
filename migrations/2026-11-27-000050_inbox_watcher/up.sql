-- The inbox watcher: which replica reads each mailbox's IMAP inbox (a lease, so exactly one
-- does at a time and another takes over when it dies), how far it has read, and how the
-- connection is doing (shown with the mailbox in the API).
CREATE TABLE inbox_watches (
    mailbox_id            uuid PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
    owner                 text,
    lease_expires_at      timestamptz,
    -- The folder's UIDVALIDITY and the highest UID already read: UIDs are only comparable
    -- under one UIDVALIDITY, so a change means reading again by date.
    uid_validity          bigint,
    last_uid              bigint NOT NULL DEFAULT 0 CHECK (last_uid >= 0),
    status                text NOT NULL DEFAULT 'pending' CHECK (status IN (
                              'pending', 'connecting', 'idle', 'polling', 'error')),
    last_error            text,
    consecutive_failures  integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    last_checked_at       timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
-- Claiming looks for unowned or expired leases.
CREATE INDEX inbox_watches_lease_idx ON inbox_watches (lease_expires_at);
CREATE TRIGGER inbox_watches_updated_at BEFORE UPDATE ON inbox_watches
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Whether an automatic answer (out of office) stops the enrollment like a reply does. Off by
-- default: the prospect has not answered, they are away.
ALTER TABLE sequences ADD COLUMN stop_on_auto_reply boolean NOT NULL DEFAULT false;
