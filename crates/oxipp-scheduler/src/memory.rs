//! Bounded memory of finished task ids.
//!
//! Stock keeps `all_ids`, `all_completed`, `all_failed`, `destinations` and the per-engine
//! completed/failed sets forever, so a controller that runs millions of tasks grows without
//! bound. They are only needed to resolve *later* `after`/`follow` dependencies on old ids,
//! so this keeps the most recent `capacity` finished ids exactly (outcome + engine
//! incarnation) and forgets the oldest first (FIFO).
//!
//! A forgotten id is indistinguishable from one that was never submitted, so a new task that
//! depends on it fails with `InvalidDependency` (the message says the id may have been
//! forgotten). We chose this over pretending the old task succeeded: it never runs a task
//! after a dependency that actually failed, or on an arbitrary engine for `follow`, and it
//! keeps bogus ids detectable. Tasks that are already waiting are unaffected: they record
//! each dependency's outcome when it finishes (see `DepTrack`).

use std::collections::VecDeque;
use std::sync::Arc;

use crate::idtable::IdTable;

/// Default number of finished ids remembered.
pub const DEFAULT_DONE_CAPACITY: usize = 1_000_000;

const NO_ENGINE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Rec {
    gen: u64,
    engine: u32,
    ok: bool,
}

/// Outcome of a remembered finished task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Done {
    pub ok: bool,
    /// Engine incarnation it ran on; `None` if the scheduler failed it.
    pub engine: Option<u32>,
}

#[derive(Debug)]
pub(crate) struct DoneMemory {
    capacity: usize,
    map: IdTable<Rec>,
    /// Insertion order; `gen` tells a stale entry (id finished again later) from the live one.
    fifo: VecDeque<(u64, Arc<str>, u64)>,
    next_gen: u64,
    forgotten: u64,
    /// fifo entries whose id was recorded again later
    stale: usize,
}

impl DoneMemory {
    pub fn new(capacity: usize) -> Self {
        DoneMemory {
            capacity,
            map: IdTable::default(),
            fifo: VecDeque::new(),
            next_gen: 0,
            forgotten: 0,
            stale: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        self.evict();
    }

    /// Number of ids currently remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Number of ids forgotten so far.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Remember that `id` (whose [`IdHasher`](crate::idtable::IdHasher) hash is `hash`)
    /// finished.
    pub fn record(&mut self, hash: u64, id: Arc<str>, ok: bool, engine: Option<u32>) {
        if self.capacity == 0 {
            self.forgotten += 1;
            return;
        }
        let gen = self.next_gen;
        self.next_gen += 1;
        let rec = Rec {
            gen,
            engine: engine.unwrap_or(NO_ENGINE),
            ok,
        };
        self.fifo.push_back((hash, id.clone(), gen));
        // a reused msg_id that finishes again overwrites the record; its older fifo entry
        // then no longer matches `gen` and is skipped on eviction
        if self.map.insert(hash, id, rec).is_some() {
            self.stale += 1;
        }
        self.evict();
    }

    pub fn get(&self, hash: u64, id: &str) -> Option<Done> {
        self.map.get(hash, id).map(|r| Done {
            ok: r.ok,
            engine: (r.engine != NO_ENGINE).then_some(r.engine),
        })
    }

    fn evict(&mut self) {
        while self.map.len() > self.capacity {
            let Some((hash, id, gen)) = self.fifo.pop_front() else {
                break;
            };
            if self.map.remove_if(hash, &id, |r| r.gen == gen) {
                self.forgotten += 1;
            } else {
                // stale entry of an id recorded again later: the newer record stays
                self.stale = self.stale.saturating_sub(1);
            }
        }
        // stale entries only leave the fifo when they reach its front; if ids keep being
        // re-recorded below capacity, compact so the fifo stays within 2x the map
        if self.stale > 64 && self.stale > self.map.len() {
            let map = &self.map;
            self.fifo
                .retain(|(hash, id, gen)| map.get(*hash, id).is_some_and(|r| r.gen == *gen));
            self.stale = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idtable::IdHasher;

    /// Test shim: hash with a fixed hasher.
    trait Simple {
        fn rec(&mut self, id: &str, ok: bool, engine: Option<u32>);
        fn look(&self, id: &str) -> Option<Done>;
    }

    thread_local! {
        static H: IdHasher = IdHasher::default();
    }

    impl Simple for DoneMemory {
        fn rec(&mut self, id: &str, ok: bool, engine: Option<u32>) {
            let h = H.with(|h| h.hash(id));
            self.record(h, Arc::from(id), ok, engine);
        }
        fn look(&self, id: &str) -> Option<Done> {
            let h = H.with(|h| h.hash(id));
            self.get(h, id)
        }
    }

    #[test]
    fn fifo_eviction() {
        let mut m = DoneMemory::new(3);
        for i in 0..5 {
            m.rec(&format!("t{i}"), i % 2 == 0, Some(i));
        }
        assert_eq!(m.len(), 3);
        assert_eq!(m.forgotten(), 2);
        assert_eq!(m.look("t0"), None);
        assert_eq!(m.look("t1"), None);
        assert_eq!(
            m.look("t4"),
            Some(Done {
                ok: true,
                engine: Some(4)
            })
        );
        assert_eq!(
            m.look("t3"),
            Some(Done {
                ok: false,
                engine: Some(3)
            })
        );
    }

    #[test]
    fn reused_id_keeps_newest() {
        let mut m = DoneMemory::new(2);
        m.rec("a", true, None);
        m.rec("b", true, None);
        m.rec("a", false, Some(1)); // a finishes again
        assert_eq!(m.len(), 2);
        m.rec("c", true, None); // evicts b (a's first entry is stale)
        assert_eq!(m.look("b"), None);
        assert_eq!(
            m.look("a"),
            Some(Done {
                ok: false,
                engine: Some(1)
            })
        );
        assert!(m.fifo.len() <= 3);
    }

    #[test]
    fn re_recording_below_capacity_stays_bounded() {
        let mut m = DoneMemory::new(1000);
        for i in 0..100_000 {
            m.rec(&format!("x{}", i % 3), true, None);
        }
        assert_eq!(m.len(), 3);
        assert!(m.fifo.len() < 200, "{}", m.fifo.len());
        assert_eq!(m.forgotten(), 0);
    }

    #[test]
    fn zero_and_shrink() {
        let mut m = DoneMemory::new(0);
        m.rec("a", true, None);
        assert_eq!((m.len(), m.forgotten()), (0, 1));
        let mut m = DoneMemory::new(10);
        for i in 0..10 {
            m.rec(&i.to_string(), true, None);
        }
        m.set_capacity(4);
        assert_eq!(m.len(), 4);
        assert!(m.look("5").is_none() && m.look("6").is_some());
        assert_eq!(m.capacity(), 4);
    }
}
