DROP TABLE mailbox_first_sends;

DROP TABLE message_leases;

DROP INDEX messages_retry_due_idx;
ALTER TABLE messages DROP CONSTRAINT messages_retry_at_only_retrying;
DROP INDEX messages_workspace_idx;
DROP INDEX messages_mailbox_idx;

CREATE INDEX messages_waiting_for_mailbox_idx ON messages (mailbox_id)
    WHERE status = 'retrying' AND retry_at IS NULL;
CREATE INDEX messages_sending_lease_idx ON messages (lease_expires_at) WHERE status = 'sending';
CREATE INDEX messages_retry_due_idx ON messages (retry_at) WHERE status = 'retrying';
CREATE INDEX messages_workspace_status_idx ON messages (workspace_id, status, id);
CREATE INDEX messages_mailbox_sends_idx ON messages (mailbox_id, id DESC)
    WHERE status IN ('sent', 'bounced');
CREATE INDEX messages_mailbox_sent_idx ON messages (mailbox_id, sent_at);

ALTER TABLE messages RESET (fillfactor);
