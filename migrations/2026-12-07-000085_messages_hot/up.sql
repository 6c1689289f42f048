-- The sender worker updates each message twice (claim: queued -> sending; outcome: sending ->
-- sent), and each update inserted an entry into every index of `messages`, because `status`,
-- `sent_at` and `lease_expires_at` were index keys or partial-index predicates: PostgreSQL
-- makes an update HOT (a new version on the same page, no index entry) only when no column any
-- index refers to changes. Here no index refers to a column the send path changes (`status`,
-- `worker_id`, `lease_expires_at`, `sent_at`, `smtp_response`, `subject`, `updated_at`), and
-- inserts leave 75 % of each new page free for the rows' next versions (only pages written
-- from now on). The claim's version is ~40 bytes longer than the queued one and the sent one
-- another ~50 or more (subject, reply); an old version is pruned only once no transaction
-- open when it died is still running, in any database of the cluster (the worker's outcome
-- usually comes before that, other services' transactions being open all the time), so a
-- page needs room for all three versions of its rows. Measured on 2,500 rows of ~225 bytes
-- (a 50-character subject) updated a page at a time: with no other transaction open, fill
-- factor 50 left 18 % of the claims and 27 % of the outcomes not HOT, 35 none; with one open
-- in another database, 35 left 58 % of the outcomes not HOT, 30 30 %, 25 none (the claims
-- were all HOT from 45 down). A page then ends with ~9 sent rows instead of ~25. A query
-- filtering on `status` reads it from the row, through an index on something that does not
-- change while sending.
ALTER TABLE messages SET (fillfactor = 25);

-- IF EXISTS: another branch may have replaced it. Its one reader now reads
-- `mailbox_first_sends` (below).
DROP INDEX IF EXISTS messages_mailbox_sent_idx;
DROP INDEX messages_mailbox_sends_idx;
DROP INDEX messages_workspace_status_idx;
DROP INDEX messages_retry_due_idx;
DROP INDEX messages_sending_lease_idx;
DROP INDEX messages_waiting_for_mailbox_idx;

-- A mailbox's messages, newest first by id (UUIDv7: dispatch order): the reputation guard's
-- windows of its latest sends (`sent` or `bounced`, filtered on the row), the messages parked
-- for it (`retrying` with no `retry_at`, released by `mailboxes_release_waiting_messages`), and
-- the deletes of a mailbox's messages.
CREATE INDEX messages_mailbox_idx ON messages (mailbox_id, id DESC);
-- The API's listing of a workspace's messages in id order (`?status=` filtered on the row).
CREATE INDEX messages_workspace_idx ON messages (workspace_id, id);
-- Retries by due time. `retry_at` is set only while a message is `retrying` (every change
-- out of `retrying` clears it; the check keeps it so), so this holds exactly the retries
-- with a time, and neither send-path update (on a message whose `retry_at` is NULL
-- already) changes it.
UPDATE messages SET retry_at = NULL WHERE retry_at IS NOT NULL AND status <> 'retrying';
ALTER TABLE messages ADD CONSTRAINT messages_retry_at_only_retrying
    CHECK (retry_at IS NULL OR status = 'retrying');
CREATE INDEX messages_retry_due_idx ON messages (retry_at) WHERE retry_at IS NOT NULL;

-- The worker's leases, out of `messages` so that the claim and the outcome leave its indexes
-- alone: the claim inserts a row per message it moves to `sending`, every statement that
-- moves a message held by a worker out of `sending` deletes it, and the lease reaper finds
-- the expired ones here (it deletes those whose message is gone or no longer `sending`).
-- `messages.worker_id` and `messages.lease_expires_at` are still written, for the record.
CREATE TABLE message_leases (
    message_id        uuid PRIMARY KEY,
    lease_expires_at  timestamptz NOT NULL
);
CREATE INDEX message_leases_expiry_idx ON message_leases (lease_expires_at);
INSERT INTO message_leases (message_id, lease_expires_at)
SELECT id, lease_expires_at FROM messages
 WHERE status = 'sending' AND lease_expires_at IS NOT NULL;

-- When each mailbox first sent (the inbox watcher reads its folders from then), kept by the
-- worker's outcome statement and by a person's `sent` resolution (the earliest wins), instead
-- of an index on `messages (mailbox_id, sent_at)`. A table of its own: `mailboxes` is at the
-- 32 columns the schema's Diesel build supports.
CREATE TABLE mailbox_first_sends (
    mailbox_id     uuid PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
    first_sent_at  timestamptz NOT NULL
);
INSERT INTO mailbox_first_sends (mailbox_id, first_sent_at)
SELECT s.mailbox_id, min(s.sent_at) FROM messages s JOIN mailboxes mb ON mb.id = s.mailbox_id
 WHERE s.sent_at IS NOT NULL
 GROUP BY s.mailbox_id;
