-- What the sender worker needs: finding messages whose worker died mid-send (their lease
-- ran out while still 'sending'), without scanning every message ever sent.
CREATE INDEX messages_sending_lease_idx ON messages (lease_expires_at) WHERE status = 'sending';
