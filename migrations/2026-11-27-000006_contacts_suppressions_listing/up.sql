-- Listings walk a workspace's rows in id order (UUIDv7, so creation order) with a cursor:
-- WHERE workspace_id = $1 AND id > $cursor ORDER BY id LIMIT n. Without these indexes that
-- query scans the primary key across every tenant.
CREATE INDEX contacts_workspace_id_idx ON contacts (workspace_id, id);
CREATE INDEX suppressions_workspace_id_idx ON suppressions (workspace_id, id);
