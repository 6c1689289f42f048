DROP TRIGGER sequences_queue_enrollments ON sequences;
DROP FUNCTION queue_sequence_enrollments();
DROP TRIGGER enrollments_queue_changed ON enrollments;
DROP FUNCTION queue_changed_enrollment();
DROP TRIGGER enrollments_queue_inserted ON enrollments;
DROP FUNCTION queue_inserted_enrollments();
ALTER TABLE enrollments RESET (fillfactor);
CREATE INDEX enrollments_due_idx ON enrollments (next_send_at) WHERE status = 'active';
DROP TABLE due_enrollments;
