-- One composite foreign key from an enrollment to its sequence *in its workspace*, instead of
-- one to the sequence and one to the workspace: one per-row check less when enrolling (the
-- checks are per-row triggers), and it also guarantees an enrollment's sequence belongs to the
-- enrollment's workspace. The workspace is still guaranteed: sequences.workspace_id references
-- workspaces, and deleting a workspace still cascades (workspace -> sequences -> enrollments).
ALTER TABLE sequences ADD CONSTRAINT sequences_workspace_id_id_key UNIQUE (workspace_id, id);
-- The unique index serves every query the plain one did.
DROP INDEX sequences_workspace_idx;

ALTER TABLE enrollments
    DROP CONSTRAINT enrollments_workspace_id_fkey,
    DROP CONSTRAINT enrollments_sequence_id_fkey,
    ADD CONSTRAINT enrollments_workspace_sequence_fkey FOREIGN KEY (workspace_id, sequence_id)
        REFERENCES sequences (workspace_id, id) ON DELETE CASCADE;
