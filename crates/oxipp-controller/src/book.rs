//! The Hub's in-memory view of work in flight, separate from the task database: which
//! msg_ids are pending, which engine holds which, what each engine completed.
//!
//! `queue_status` is answered from here (like stock), so it must stay correct even with
//! `--nodb`. Everything that would grow with the number of tasks ever run is bounded:
//! per-engine completed lists keep the most recent `completed_cap` ids plus a total count.

use std::collections::{HashMap, HashSet, VecDeque};

use indexmap::IndexSet;

/// Completed ids kept per engine for verbose `queue_status`.
pub const COMPLETED_CAP: usize = 10_000;
/// Recently completed ids remembered for `result_request` status when the DB stores nothing.
pub const RECENT_CAP: usize = 100_000;

#[derive(Debug, Default)]
pub struct EngineBook {
    /// Direct (mux) requests sent to this engine and not answered yet.
    pub queue: IndexSet<String>,
    /// Load-balanced tasks assigned to this engine and not answered yet.
    pub tasks: IndexSet<String>,
    pub completed: VecDeque<String>,
    pub completed_total: u64,
}

#[derive(Debug, Default)]
pub struct Book {
    pub pending: HashSet<String>,
    pub unassigned: IndexSet<String>,
    pub engines: HashMap<u32, EngineBook>,
    recent: IndexSet<String>,
}

impl Book {
    pub fn engine(&mut self, id: u32) -> &mut EngineBook {
        self.engines.entry(id).or_default()
    }

    /// Marks `msg_id` finished; `on` = the engine credited with it (none for scheduler
    /// failures), `count` = whether it counts as completed there (aborted ones don't).
    pub fn finish(&mut self, msg_id: &str, on: Option<u32>, count: bool) -> bool {
        let was_pending = self.pending.remove(msg_id);
        self.unassigned.shift_remove(msg_id);
        if let Some(eid) = on {
            let e = self.engine(eid);
            e.queue.shift_remove(msg_id);
            e.tasks.shift_remove(msg_id);
            if count && was_pending {
                e.completed.push_back(msg_id.to_string());
                e.completed_total += 1;
                if e.completed.len() > COMPLETED_CAP {
                    e.completed.pop_front();
                }
            }
        }
        if was_pending {
            self.recent.insert(msg_id.to_string());
            if self.recent.len() > RECENT_CAP {
                self.recent.shift_remove_index(0);
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
