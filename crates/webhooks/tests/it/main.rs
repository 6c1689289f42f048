//! Integration tests of the webhooks service against real PostgreSQL, Kafka and HTTP
//! receivers on loopback ports, every request judged by the Standard Webhooks library.

mod delivery;
mod failures;
mod kill;
mod world;
