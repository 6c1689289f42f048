ALTER TABLE enrollments
    DROP CONSTRAINT enrollments_workspace_sequence_fkey,
    ADD CONSTRAINT enrollments_sequence_id_fkey FOREIGN KEY (sequence_id)
        REFERENCES sequences (id) ON DELETE CASCADE,
    ADD CONSTRAINT enrollments_workspace_id_fkey FOREIGN KEY (workspace_id)
        REFERENCES workspaces (id) ON DELETE CASCADE;

CREATE INDEX sequences_workspace_idx ON sequences (workspace_id, id);
ALTER TABLE sequences DROP CONSTRAINT sequences_workspace_id_id_key;
