-- The inbox watcher reads more than one folder of a mailbox (INBOX and the Junk folder, or
-- the folders configured in inbox_watcher.folders), each with its own read position: UIDs
-- and UIDVALIDITY belong to one folder. The lease and the watch's status stay per mailbox
-- (one task reads all of a mailbox's folders).
CREATE TABLE inbox_folder_positions (
    mailbox_id    uuid NOT NULL REFERENCES inbox_watches (mailbox_id) ON DELETE CASCADE,
    -- The folder's name as the server lists it (modified UTF-7, as sent back to EXAMINE).
    folder        text NOT NULL CHECK (folder <> ''),
    -- The folder's UIDVALIDITY and the highest UID already read: UIDs are only comparable
    -- under one UIDVALIDITY, so a change means reading the folder again by date.
    uid_validity  bigint NOT NULL,
    last_uid      bigint NOT NULL DEFAULT 0 CHECK (last_uid >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mailbox_id, folder)
);
CREATE TRIGGER inbox_folder_positions_updated_at BEFORE UPDATE ON inbox_folder_positions
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- The positions kept so far were INBOX's (the default, and only, folder read until now).
INSERT INTO inbox_folder_positions (mailbox_id, folder, uid_validity, last_uid)
SELECT mailbox_id, 'INBOX', uid_validity, last_uid
  FROM inbox_watches
 WHERE uid_validity IS NOT NULL;

ALTER TABLE inbox_watches DROP COLUMN uid_validity, DROP COLUMN last_uid;
