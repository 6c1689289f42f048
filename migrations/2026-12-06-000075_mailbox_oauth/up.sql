-- Mailboxes connected with OAuth 2.0 (Google Workspace/Gmail, Microsoft 365), which send over
-- SMTP and read over IMAP with XOAUTH2 instead of a password.

-- `reconnect_required`: the provider no longer accepts the grant (revoked, password changed,
-- consent withdrawn). Set by the system only; like `error`, the mailbox's queued messages
-- wait (trigger `mailboxes_release_waiting_messages` releases them once it is `active`
-- again) and it is not watched. A reconnect makes it `active`.
ALTER TABLE mailboxes DROP CONSTRAINT mailboxes_status_check;
ALTER TABLE mailboxes ADD CONSTRAINT mailboxes_status_check CHECK (status IN (
    'active', 'paused', 'error', 'disabled', 'reconnect_required'));

-- The grant of a mailbox connected with OAuth: with a row here, the mailbox logs in with
-- XOAUTH2 as `connected_email` (its password columns stay NULL); without, with its password.
-- Tokens are encrypted like passwords (`crate::crypto`, associated data naming the mailbox
-- and the column). The row is also the lock under which
-- one replica refreshes the access token while the others wait for its result; `generation`
-- counts the refreshes, so a login refused with a token tells whether a newer one exists.
CREATE TABLE mailbox_oauth (
    mailbox_id               uuid PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
    provider                 text NOT NULL,
    -- The account's address as the provider's ID token named it (lower-cased).
    connected_email          text NOT NULL,
    scopes                   text[] NOT NULL DEFAULT '{}',
    refresh_token_encrypted  bytea NOT NULL,
    access_token_encrypted   bytea,
    access_token_expires_at  timestamptz,
    generation               bigint NOT NULL DEFAULT 0,
    refreshed_at             timestamptz,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER mailbox_oauth_updated_at BEFORE UPDATE ON mailbox_oauth
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
-- One account is connected to one mailbox across all workspaces: its grant cannot be shared.
CREATE UNIQUE INDEX mailbox_oauth_account_idx ON mailbox_oauth (provider, connected_email);

-- Authorization requests in flight: created by `POST /mailboxes/oauth/{provider}/authorize`,
-- used once by the callback. Only the SHA-256 of `state` is kept, so a database read does not
-- give a usable state; the PKCE verifier is encrypted.
CREATE TABLE oauth_authorizations (
    state_hash          bytea PRIMARY KEY,
    workspace_id        uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    provider            text NOT NULL,
    -- Set for a reconnect of this mailbox.
    mailbox_id          uuid REFERENCES mailboxes (id) ON DELETE CASCADE,
    verifier_encrypted  bytea NOT NULL,
    -- The mailbox settings that are not credentials, as the request gave them.
    settings            jsonb NOT NULL DEFAULT '{}',
    login_hint          text,
    return_url          text,
    expires_at          timestamptz NOT NULL,
    used_at             timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX oauth_authorizations_expires_idx ON oauth_authorizations (expires_at);
