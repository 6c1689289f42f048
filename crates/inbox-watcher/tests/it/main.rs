//! Integration tests of the inbox watcher against GreenMail (SMTP to deliver answers, IMAP
//! to read them), PostgreSQL and Kafka.

mod classified;
mod failures;
mod junk;
mod leases;
mod restart;
mod world;
