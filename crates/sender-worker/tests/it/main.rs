//! Integration tests of the sender-worker service against real PostgreSQL, Kafka and SMTP
//! servers (GreenMail, Postfix's smtp-sink).

mod delivery;
mod failures;
mod health;
mod kill;
mod world;
