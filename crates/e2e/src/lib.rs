//! End-to-end tests across services, in `tests/`. The service crates may depend on `domain`
//! only (checked by xtask's layering test), so tests that run two services together, talking
//! through the real Kafka and PostgreSQL as in production, live in this crate, which is never
//! built into a container.
