//! Integration tests of the scheduler service against real PostgreSQL and Kafka.

mod dispatch;
mod health;
mod outcomes;
mod reputation;
mod resolutions;
mod service;
mod webhook_events;
mod world;
