DROP TRIGGER mailboxes_delete_messages ON mailboxes;
DROP FUNCTION delete_messages_of_mailboxes();
DROP TRIGGER steps_delete_messages ON steps;
DROP FUNCTION delete_messages_of_steps();
DROP TRIGGER enrollments_delete_messages ON enrollments;
DROP FUNCTION delete_messages_of_enrollments();
-- Messages whose row went while the constraints were off cannot exist (the triggers above
-- deleted them), so the constraints are valid as added.
ALTER TABLE messages ADD CONSTRAINT messages_enrollment_id_fkey
    FOREIGN KEY (enrollment_id) REFERENCES enrollments (id) ON DELETE CASCADE;
ALTER TABLE messages ADD CONSTRAINT messages_step_id_fkey
    FOREIGN KEY (step_id) REFERENCES steps (id) ON DELETE CASCADE;
ALTER TABLE messages ADD CONSTRAINT messages_mailbox_id_fkey
    FOREIGN KEY (mailbox_id) REFERENCES mailboxes (id) ON DELETE CASCADE;

-- Jobs not yet published go back to the generic outbox, whose relay publishes them (to the
-- default topic name: a deployment with a topic prefix renames them before running this).
INSERT INTO outbox (topic, message_key, payload, headers, created_at)
SELECT 'email-jobs', j.mailbox_id::text,
       jsonb_build_object('id', gen_random_uuid(), 'version', 1, 'occurred_at', j.created_at,
                          'workspace_id', j.workspace_id, 'type', 'send',
                          'payload', jsonb_build_object('message_id', j.message_id,
                                                        'enrollment_id', j.enrollment_id,
                                                        'mailbox_id', j.mailbox_id,
                                                        'attempt', j.attempt)),
       coalesce(j.headers, '{}'::jsonb), j.created_at
  FROM send_jobs j ORDER BY j.id;
DROP TABLE send_jobs;
