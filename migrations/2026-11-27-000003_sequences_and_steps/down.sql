DROP TABLE sequence_mailboxes;
DROP TABLE steps;
DROP TABLE sequences;
