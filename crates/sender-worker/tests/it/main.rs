//! Integration tests of the sender-worker service against real PostgreSQL, Kafka and the test
//! mail server (GreenMail), and against a scripted fake SMTP server.

mod fake_smtp;
mod health;
mod smtp_greenmail;
mod smtp_pools;
