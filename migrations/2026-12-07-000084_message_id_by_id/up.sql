-- A message's Message-ID is `<its id@its mailbox's domain>`: the dispatcher writes it so, and a
-- cancelled message queued again keeps its id in it. So it is unique because the id is, and
-- the inbox watcher finds the message a reply or a report refers to by the id it reads out
-- of the reference. The unique index on the header added an entry at each of the message's
-- three versions (queued, sending, sent: status is indexed, so none of them is a HOT update)
-- for nothing a lookup used; the check below keeps the property the uniqueness now rests on.
ALTER TABLE messages DROP CONSTRAINT messages_message_id_header_key;
ALTER TABLE messages ADD CONSTRAINT messages_message_id_header_names_id
    CHECK (message_id_header IS NULL OR starts_with(message_id_header, '<' || id::text || '@'));
