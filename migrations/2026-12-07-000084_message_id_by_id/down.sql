ALTER TABLE messages DROP CONSTRAINT messages_message_id_header_names_id;
ALTER TABLE messages ADD CONSTRAINT messages_message_id_header_key UNIQUE (message_id_header);
