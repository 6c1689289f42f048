//! Which Kafka offsets may be committed when jobs finish out of order.
//!
//! Jobs of one partition finish in any order (sends run concurrently, and a job waiting for
//! its mailbox's spacing finishes late), but a committed offset means "everything before it
//! is done". So a partition's commit point is its oldest unfinished offset, or one past the
//! newest finished offset when nothing is unfinished.
//!
//! After a rebalance the same record may be read twice (here and by the partition's new
//! owner); that is harmless, as the claim lets only one of them send.

use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Default)]
struct Partition {
    pending: BTreeSet<i64>,
    /// One past the highest offset finished so far.
    next: i64,
}

impl Partition {
    fn commit_point(&self) -> i64 {
        self.pending.first().copied().unwrap_or(self.next)
    }
}

#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<i32, Partition>,
}

impl OffsetTracker {
    /// A record was read and its job started.
    pub fn start(&mut self, partition: i32, offset: i64) {
        self.partitions
            .entry(partition)
            .or_default()
            .pending
            .insert(offset);
    }

    /// The record's job is done (recorded, or nothing to do). Returns the partition's new
    /// commit point when it moved.
    pub fn finish(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let state = self.partitions.get_mut(&partition)?;
        let before = state.commit_point();
        state.pending.remove(&offset);
        state.next = state.next.max(offset + 1);
        let after = state.commit_point();
        (after > before).then_some(after)
    }

    /// Jobs started and not finished, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_completion_moves_the_point_each_time() {
        let mut offsets = OffsetTracker::default();
        offsets.start(0, 10);
        offsets.start(0, 11);
        assert_eq!(offsets.finish(0, 10), Some(11));
        assert_eq!(offsets.finish(0, 11), Some(12));
        assert_eq!(offsets.in_flight(), 0);
    }

    #[test]
    fn a_late_job_holds_the_point_until_it_finishes() {
        let mut offsets = OffsetTracker::default();
        for offset in 5..9 {
            offsets.start(3, offset);
        }
        assert_eq!(offsets.finish(3, 6), None);
        assert_eq!(offsets.finish(3, 8), None);
        assert_eq!(offsets.finish(3, 5), Some(7), "7 is still running");
        assert_eq!(offsets.finish(3, 7), Some(9));
    }

    #[test]
    fn partitions_are_independent() {
        let mut offsets = OffsetTracker::default();
        offsets.start(0, 1);
        offsets.start(1, 100);
        assert_eq!(offsets.finish(1, 100), Some(101));
        assert_eq!(offsets.in_flight(), 1);
        assert_eq!(offsets.finish(0, 1), Some(2));
    }
}
