DROP TRIGGER mailboxes_release_waiting_messages ON mailboxes;
DROP FUNCTION release_waiting_messages();
DROP INDEX messages_waiting_for_mailbox_idx;
DROP INDEX messages_mailbox_sends_idx;
DROP INDEX mailboxes_recheck_idx;
DROP TRIGGER mailboxes_reset_check ON mailboxes;
DROP FUNCTION reset_mailbox_check();
ALTER TABLE mailboxes
    DROP COLUMN max_complaint_rate,
    DROP COLUMN max_bounce_rate,
    DROP COLUMN check_failures,
    DROP COLUMN next_check_at;
