//! The waiting queue (stock `queue` + `queue_map` + per-job timeout timers).
//!
//! Stock keeps one FIFO deque of waiting jobs: jobs whose `after` is met but that could not
//! be placed (no capacity, `follow`/`targets`/blacklist), and jobs whose `after` is still
//! unmet. A rescan walks it front to back. Every (re-)queue appends at the back, so the
//! order is "time of last enqueue".
//!
//! Here each enqueue takes a fresh, increasing position and the scheduler only ever scans
//! *ready* jobs (`after` met): a job with unmet `after` cannot run, and its reachability only
//! changes when one of its dependencies finishes, which the dependency graph handles
//! directly. Ready jobs live in two position-ordered containers that scans merge:
//! * `deque`: jobs that were ready when enqueued. Positions only grow, so appending keeps it
//!   sorted; removal pops the front (the hot path) or leaves a tombstone that is compacted
//!   away once tombstones outnumber live entries (O(1) amortized).
//! * `late`: jobs that became ready *after* being enqueued (released by a finished
//!   dependency) keep their original position, so they go into a `BTreeMap` (rare path).
//!
//! Timeouts are a `BTreeMap` keyed by `(deadline, position)`, removed exactly when the job
//! leaves the queue, so [`WaitQueue::next_deadline`] is exact.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// A job slot and its generation (slots are reused; the generation tells them apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct JobRef {
    pub idx: u32,
    pub gen: u32,
}

/// Where a queued job sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// `after` not met: only the dependency graph refers to it.
    Blocked,
    /// Ready, in `deque`.
    Deque,
    /// Ready, in `late`.
    Late,
}

#[derive(Debug, Default)]
pub(crate) struct WaitQueue {
    deque: VecDeque<(u64, Option<JobRef>)>,
    tombstones: usize,
    late: BTreeMap<u64, JobRef>,
    timers: BTreeMap<(Instant, u64), JobRef>,
    next_pos: u64,
    len: usize,
}

impl WaitQueue {
    /// Number of queued jobs (ready or blocked).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Enqueue at the back; returns the job's position and place.
    pub fn push(&mut self, jr: JobRef, ready: bool, deadline: Option<Instant>) -> (u64, Place) {
        let pos = self.next_pos;
        self.next_pos += 1;
        self.len += 1;
        if let Some(d) = deadline {
            self.timers.insert((d, pos), jr);
        }
        if ready {
            self.deque.push_back((pos, Some(jr)));
            (pos, Place::Deque)
        } else {
            (pos, Place::Blocked)
        }
    }

    /// A blocked job's `after` became met: it joins the scan order at its old position.
    pub fn make_ready(&mut self, pos: u64, jr: JobRef) -> Place {
        self.late.insert(pos, jr);
        Place::Late
    }

    /// Remove a queued job (it runs, fails or times out).
    pub fn remove(&mut self, pos: u64, place: Place, deadline: Option<Instant>) {
        self.len -= 1;
        if let Some(d) = deadline {
            self.timers.remove(&(d, pos));
        }
        match place {
            Place::Blocked => {}
            Place::Late => {
                self.late.remove(&pos);
            }
            Place::Deque => {
                if self.deque.front().is_some_and(|e| e.0 == pos) {
                    self.deque.pop_front();
                    self.trim_front();
                } else if let Ok(i) = self.deque.binary_search_by_key(&pos, |e| e.0) {
                    debug_assert!(self.deque[i].1.is_some());
                    self.deque[i].1 = None;
                    self.tombstones += 1;
                    if self.tombstones > 32 && self.tombstones * 2 > self.deque.len() {
                        self.deque.retain(|e| e.1.is_some());
                        self.tombstones = 0;
                    }
                }
            }
        }
    }

    fn trim_front(&mut self) {
        while self.deque.front().is_some_and(|e| e.1.is_none()) {
            self.deque.pop_front();
            self.tombstones -= 1;
        }
    }

    /// First ready job at position `>= from`, in queue order.
    pub fn next_ready(&self, from: u64) -> Option<(u64, JobRef)> {
        let start = match self.deque.front() {
            None => self.deque.len(),
            Some(front) if front.0 >= from => 0,
            Some(_) => self.deque.partition_point(|e| e.0 < from),
        };
        let from_deque = self
            .deque
            .range(start..)
            .find_map(|&(pos, jr)| jr.map(|jr| (pos, jr)));
        let from_late = self.late.range(from..).next().map(|(&p, &jr)| (p, jr));
        match (from_deque, from_late) {
            (Some(d), Some(l)) => Some(if d.0 < l.0 { d } else { l }),
            (d, l) => d.or(l),
        }
    }

    /// Earliest armed timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.first_key_value().map(|(k, _)| k.0)
    }

    /// Pop one timer that expired at `now`. The caller then removes the job with
    /// `deadline = None` (the timer is already gone).
    pub fn pop_expired(&mut self, now: Instant) -> Option<JobRef> {
        let (&(deadline, _), _) = self.timers.first_key_value()?;
        if deadline > now {
            return None;
        }
        self.timers.pop_first().map(|(_, jr)| jr)
    }

    #[cfg(test)]
    pub fn storage_len(&self) -> usize {
        self.deque.len() + self.late.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn jr(i: u32) -> JobRef {
        JobRef { idx: i, gen: 0 }
    }

    #[test]
    fn order_merges_deque_and_late() {
        let mut q = WaitQueue::default();
        let (p0, _) = q.push(jr(0), true, None);
        let (p1, b) = q.push(jr(1), false, None);
        assert_eq!(b, Place::Blocked);
        let (p2, _) = q.push(jr(2), true, None);
        assert_eq!(q.len(), 3);
        // blocked job is not visible until ready
        assert_eq!(q.next_ready(p0 + 1), Some((p2, jr(2))));
        q.make_ready(p1, jr(1));
        let mut seen = vec![];
        let mut from = 0;
        while let Some((p, j)) = q.next_ready(from) {
            seen.push(j.idx);
            from = p + 1;
        }
        assert_eq!(seen, vec![0, 1, 2]);
        q.remove(p1, Place::Late, None);
        q.remove(p0, Place::Deque, None);
        assert_eq!(q.next_ready(0), Some((p2, jr(2))));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn tombstones_are_compacted() {
        let mut q = WaitQueue::default();
        let ps: Vec<u64> = (0..1000).map(|i| q.push(jr(i), true, None).0).collect();
        // remove every job but the first, from the middle
        for &p in &ps[1..] {
            q.remove(p, Place::Deque, None);
        }
        assert!(q.storage_len() <= 70, "{}", q.storage_len());
        q.remove(ps[0], Place::Deque, None);
        assert_eq!(q.storage_len(), 0);
        assert_eq!(q.next_ready(0), None);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn timers() {
        let t0 = Instant::now();
        let mut q = WaitQueue::default();
        let d1 = t0 + Duration::from_secs(2);
        let d2 = t0 + Duration::from_secs(1);
        let (p1, pl1) = q.push(jr(1), true, Some(d1));
        let (_p2, _) = q.push(jr(2), false, Some(d2));
        assert_eq!(q.next_deadline(), Some(d2));
        assert_eq!(q.pop_expired(t0), None);
        assert_eq!(q.pop_expired(d2), Some(jr(2)));
        q.remove(p1, pl1, Some(d1));
        assert_eq!(q.next_deadline(), None);
    }
}
