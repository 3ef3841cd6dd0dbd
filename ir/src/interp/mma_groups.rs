//! Asynchronous warpgroup mma groups of one warp (`mma_async` / `mma_commit` / `mma_wait`).
//!
//! Each `mma_async` of a warp gets the next number; a group is the numbers issued since the
//! previous `mma_commit`, so committed groups are consecutive ranges, oldest first, and
//! `mma_wait[n]` completes a prefix of them: the warp's mmas below one number are complete.
//! An accumulator is retired by an `mma_wait` exactly when its number is below that mark.

use std::collections::VecDeque;

#[derive(Clone, Debug, Default)]
pub(crate) struct MmaGroups {
    /// The number the next `mma_async` gets.
    next: u64,
    /// The end (one past the last number) of each committed, not yet completed group.
    committed: VecDeque<u64>,
    /// Every mma numbered below this has completed.
    complete_below: u64,
}

impl MmaGroups {
    /// An `mma_async` joins the open group; returns its number.
    pub fn issue(&mut self) -> u64 {
        let id = self.next;
        self.next += 1;
        id
    }

    /// `mma_commit`: closes the open group (empty when nothing was issued since the last).
    pub fn commit(&mut self) {
        self.committed.push_back(self.next);
    }

    /// `mma_wait[keep]`: completes every committed group except the `keep` most recent.
    pub fn wait(&mut self, keep: usize) {
        while self.committed.len() > keep {
            if let Some(end) = self.committed.pop_front() {
                self.complete_below = end;
            }
        }
    }

    /// Whether mma `id` has completed.
    pub fn complete(&self, id: u64) -> bool {
        id < self.complete_below
    }

    /// Whether mma `id` is in a committed group (else it is in the open one).
    pub fn committed(&self, id: u64) -> bool {
        self.committed.back().is_some_and(|&end| id < end) || self.complete(id)
    }

    /// How many mmas have not completed.
    pub fn outstanding(&self) -> u64 {
        self.next - self.complete_below
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_complete_all_but_the_newest_groups() {
        let mut g = MmaGroups::default();
        let a = g.issue();
        g.commit();
        let b = g.issue();
        let c = g.issue();
        g.commit();
        let d = g.issue();
        assert!(g.committed(c) && !g.committed(d));
        g.wait(1);
        assert!(g.complete(a) && !g.complete(b) && !g.complete(c));
        g.commit();
        g.wait(1);
        assert!(g.complete(b) && g.complete(c) && !g.complete(d));
        assert_eq!(g.outstanding(), 1);
        // An empty group still counts.
        g.commit();
        g.wait(1);
        assert!(g.complete(d));
        assert_eq!(g.outstanding(), 0);
    }
}
