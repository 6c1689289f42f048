DROP TABLE messages;
DROP TABLE enrollments;
