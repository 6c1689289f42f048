ALTER TABLE inbox_watches
    ADD COLUMN uid_validity bigint,
    ADD COLUMN last_uid bigint NOT NULL DEFAULT 0 CHECK (last_uid >= 0);
UPDATE inbox_watches w
   SET uid_validity = p.uid_validity, last_uid = p.last_uid
  FROM inbox_folder_positions p
 WHERE p.mailbox_id = w.mailbox_id AND p.folder = 'INBOX';
DROP TABLE inbox_folder_positions;
