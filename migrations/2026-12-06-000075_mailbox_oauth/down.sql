DROP TABLE oauth_authorizations;
DROP TABLE mailbox_oauth;
UPDATE mailboxes SET status = 'error' WHERE status = 'reconnect_required';
ALTER TABLE mailboxes DROP CONSTRAINT mailboxes_status_check;
ALTER TABLE mailboxes ADD CONSTRAINT mailboxes_status_check CHECK (status IN (
    'active', 'paused', 'error', 'disabled'));
