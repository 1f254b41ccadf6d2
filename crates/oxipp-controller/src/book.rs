//! The Hub's in-memory view of work in flight, separate from the task database: which
//! msg_ids are pending, which engine holds which, what each engine completed.
//!
//! `queue_status` is answered from here (like stock), so it must stay correct even with
//! `--nodb`. Everything that would grow with the number of tasks ever run is bounded:
//! per-engine completed lists keep the most recent `completed_cap` ids plus a total count.

use std::collections::{BTreeMap, VecDeque};

/// foldhash, seeded per process: these maps are hit several times per task with msg_id keys
/// and SipHash was a visible share of the controller's time per task.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// A set that remembers insertion order with O(log n) insert and remove (an `IndexSet`'s
/// order-preserving remove is O(n), which at thousands of tasks in flight dominated the
/// controller's time per task).
#[derive(Debug, Default)]
pub struct OrderedSet {
    seq: u64,
    by_id: HashMap<String, u64>,
    order: BTreeMap<u64, String>,
}

impl OrderedSet {
    pub fn insert(&mut self, id: String) {
        if self.by_id.contains_key(&id) {
            return;
        }
        self.seq += 1;
        self.order.insert(self.seq, id.clone());
        self.by_id.insert(id, self.seq);
    }

    pub fn remove(&mut self, id: &str) -> bool {
        match self.by_id.remove(id) {
            Some(seq) => {
                self.order.remove(&seq);
                true
            }
            None => false,
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &String> {
        self.order.values()
    }
}

/// Completed ids kept per engine for verbose `queue_status`.
pub const COMPLETED_CAP: usize = 1_000;
/// Recently completed ids remembered for `result_request` status when the DB stores nothing.
pub const RECENT_CAP: usize = 100_000;

#[derive(Debug, Default)]
pub struct EngineBook {
    /// Direct (mux) requests sent to this engine and not answered yet.
    pub queue: OrderedSet,
    /// Load-balanced tasks assigned to this engine and not answered yet.
    pub tasks: OrderedSet,
    pub completed: VecDeque<String>,
    pub completed_total: u64,
}

#[derive(Debug, Default)]
pub struct Book {
    pub pending: HashSet<String>,
    pub unassigned: OrderedSet,
    pub engines: HashMap<u32, EngineBook>,
    recent: HashSet<String>,
    recent_order: VecDeque<String>,
}

impl Book {
    pub fn engine(&mut self, id: u32) -> &mut EngineBook {
        self.engines.entry(id).or_default()
    }

    /// Marks `msg_id` finished; `on` = the engine credited with it (none for scheduler
    /// failures), `count` = whether it counts as completed there (aborted ones don't).
    pub fn finish(&mut self, msg_id: &str, on: Option<u32>, count: bool) -> bool {
        let was_pending = self.pending.remove(msg_id);
        self.unassigned.remove(msg_id);
        if let Some(eid) = on {
            let e = self.engine(eid);
            e.queue.remove(msg_id);
            e.tasks.remove(msg_id);
            if count && was_pending {
                e.completed.push_back(msg_id.to_string());
                e.completed_total += 1;
                if e.completed.len() > COMPLETED_CAP {
                    e.completed.pop_front();
                }
            }
        }
        if was_pending && self.recent.insert(msg_id.to_string()) {
            self.recent_order.push_back(msg_id.to_string());
            if self.recent_order.len() > RECENT_CAP {
                if let Some(old) = self.recent_order.pop_front() {
                    self.recent.remove(&old);
                }
            }
        }
        was_pending
    }

    pub fn recently_completed(&self, msg_id: &str) -> bool {
        self.recent.contains(msg_id)
    }

    /// Forget per-engine bookkeeping of an unregistered engine.
    pub fn drop_engine(&mut self, id: u32) -> Option<EngineBook> {
        self.engines.remove(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_moves_between_sets_and_is_bounded() {
        let mut b = Book::default();
        for i in 0..(COMPLETED_CAP + 5) {
            let id = format!("m{i}");
            b.pending.insert(id.clone());
            b.engine(0).queue.insert(id.clone());
            assert!(b.finish(&id, Some(0), true));
        }
        let e = b.engine(0);
        assert!(e.queue.is_empty());
        assert_eq!(e.completed.len(), COMPLETED_CAP);
        assert_eq!(e.completed_total as usize, COMPLETED_CAP + 5);
        assert!(!b.finish("m0", Some(0), true), "finishing twice is a no-op");
        assert!(b.recently_completed("m3"));
    }
}
