//! Message ids this replica recently saw an open of, bounded in memory, so that a click on a
//! message nobody opened can be told as a link scanner's. Approximate: each replica knows its
//! own opens only, and the oldest are forgotten first when full.
//!
//! `quick_cache` (S3-FIFO eviction, sharded locks, no background threads) rather than a
//! hand-written map and queue: it is small, maintained, and already bounded by entry count.

use quick_cache::sync::Cache;
use uuid::Uuid;

pub struct RecentOpens {
    cache: Cache<Uuid, ()>,
}

impl RecentOpens {
    pub fn new(capacity: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        Self {
            cache: Cache::new(capacity),
        }
    }

    pub fn record(&self, message_id: Uuid) {
        self.cache.insert(message_id, ());
    }

    pub fn seen(&self, message_id: Uuid) -> bool {
        self.cache.get(&message_id).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_stays_bounded() {
        let opens = RecentOpens::new(100);
        let first = Uuid::now_v7();
        assert!(!opens.seen(first));
        opens.record(first);
        assert!(opens.seen(first));
        for _ in 0..1000 {
            opens.record(Uuid::now_v7());
        }
        assert!(
            opens.cache.len() <= 200,
            "bounded, got {}",
            opens.cache.len()
        );
    }
}
