DROP TABLE contacts;
DROP TABLE mailboxes;
