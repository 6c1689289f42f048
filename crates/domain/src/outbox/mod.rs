//! Publishing the transactional outbox: rows that services wrote next to their state change
//! (see [`crate::db::outbox`]) go to Kafka, and are marked published only once the broker
//! acknowledged them.
//!
//! Guarantees: at least once (a row is published again when its round's commit fails after
//! delivery; consumers deduplicate on the envelope id), no row skipped (selection is by
//! status, not by a high-water mark, so a row committed out of id order still goes), and no
//! row dropped (a failed send only counts an attempt; the row stays pending). Any number of
//! relays may run: `FOR UPDATE SKIP LOCKED` gives each round rows no other round holds.
//! Order per key holds within one relay's round; across rounds it holds while sends succeed,
//! but a retried record or a second replica can put a later record of a key first.
//!
//! Send jobs have their own narrow outbox and relay ([`JobRelay`]), with the same guarantees.

mod backoff;
mod jobs;
mod relay;

pub use jobs::JobRelay;
pub use relay::{OutboxRelay, RelayError};
