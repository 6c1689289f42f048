//! Integration tests of the sender-worker service against real PostgreSQL, Kafka and SMTP
//! servers (GreenMail, Postfix's smtp-sink), and against a scripted fake SMTP server for the
//! exact failure stages of the connection pools.

mod announce;
mod claim;
mod delivery;
mod dkim_dkimpy;
mod ehlo;
mod failures;
mod fake_smtp;
mod health;
mod kill;
mod leases;
mod recheck;
mod signing;
mod smtp_greenmail;
mod smtp_pipelining;
mod smtp_pools;
mod spacing;
mod world;
