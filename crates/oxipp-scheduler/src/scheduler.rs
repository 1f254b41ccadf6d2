//! The load-balanced task scheduler core: stock `ipyparallel.controller.task_scheduler
//! .TaskScheduler` without sockets or clocks.
//!
//! The shell feeds it events (engine added/removed, task submitted, engine reply, time passed)
//! and carries out the returned [`Action`]s in order. Every method runs to completion: all
//! consequences of an event (dependents released, queued tasks placed, cascading failures)
//! are in the returned vector.
//!
//! Jobs live in a slab addressed by `JobRef` (slot + generation); the msg_id map, the
//! waiting queue, the dependency graph and the engine table hold refs, never copies.
//! Internal refs to a job that has since finished are detected by the generation and
//! skipped (the graph compacts them away), so nothing needs O(n) cleanup.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::dependency::{DepTrack, Known};
use crate::engines::EngineTable;
use crate::error::SchedError;
use crate::idtable::{IdHasher, IdTable};
use crate::memory::{DoneMemory, DEFAULT_DONE_CAPACITY};
use crate::queue::{JobRef, Place, WaitQueue};
use crate::request::TaskRequest;
use crate::scheme::Scheme;
use crate::FastMap;

/// What the shell must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the stored request `msg_id` to `engine` (the shell prepends
    /// `[engine_uuid, client_ident]`) and notify the Hub (`task_destination`).
    Run { msg_id: String, engine: String },
    /// Fail `msg_id` with this error: the shell replies to the client and records the result
    /// (`outtask`). The job is forgotten by the scheduler.
    Fail { msg_id: String, error: SchedError },
    /// Relay the engine reply for `msg_id` to the client now (it was final: no retry) and copy
    /// it to the Hub. The job is forgotten by the scheduler.
    Relay { msg_id: String },
}

/// What the scheduler needs from an engine's `apply_reply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Reply `metadata.status == "ok"` (`error` and `aborted` are failures).
    pub ok: bool,
    /// Reply `metadata.dependencies_met` (missing = true). False means the engine refused
    /// the task (`UnmetDependency` from `@depend`/`@require`).
    pub dependencies_met: bool,
}

impl Outcome {
    /// A successful reply.
    pub const OK: Outcome = Outcome {
        ok: true,
        dependencies_met: true,
    };
    /// A failed (or aborted) reply; also what the shell passes for stranded tasks.
    pub const FAILED: Outcome = Outcome {
        ok: false,
        dependencies_met: true,
    };
    /// The engine could not meet a functional dependency.
    pub const UNMET: Outcome = Outcome {
        ok: false,
        dependencies_met: false,
    };

    /// From the reply metadata's `status` and `dependencies_met` fields.
    pub fn from_reply(status: &str, dependencies_met: bool) -> Outcome {
        Outcome {
            ok: status == "ok",
            dependencies_met,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum JobState {
    /// Between two states inside one call (just submitted, or just answered).
    Floating,
    Queued {
        pos: u64,
        place: Place,
        deadline: Option<Instant>,
    },
    Running {
        slot: u32,
        /// Assignment order, to return stranded tasks in stock's `pending` dict order.
        stamp: u64,
        /// Index in `pending[slot]`.
        idx: u32,
    },
}

#[derive(Debug)]
struct Job {
    msg_id: Arc<str>,
    /// `IdHasher` hash of `msg_id`, computed once at submission.
    hash: u64,
    /// Submission order (stock `Job.timestamp`): orders released dependents.
    seq: u64,
    timeout: Option<Duration>,
    retries: u32,
    state: JobState,
    /// Dependencies, targets and blacklist; `None` for the common plain task, which keeps
    /// a job small (a deep queue of plain tasks costs ~100 bytes per task).
    x: Option<Box<Constraints>>,
}

#[derive(Debug)]
struct Constraints {
    /// Allowed engine uuids (empty = any). Like stock, blacklisted uuids are removed from it
    /// when no engine could take the job.
    targets: HashSet<Arc<str>>,
    /// Engine uuids this job failed on (retries) or that refused it (unmet dependency).
    blacklist: HashSet<Arc<str>>,
    after: DepTrack,
    follow: DepTrack,
}

impl Constraints {
    fn is_trivial(&self) -> bool {
        self.targets.is_empty()
            && self.blacklist.is_empty()
            && self.after.is_empty()
            && self.follow.is_empty()
    }

    /// Ids still in flight that `after` or `follow` wait for, each once.
    fn outstanding(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.after.outstanding.iter().chain(
            self.follow
                .outstanding
                .iter()
                .filter(|id| !self.after.outstanding.contains(&***id)),
        )
    }
}

impl Job {
    fn after_met(&self) -> bool {
        match &self.x {
            None => true,
            Some(x) => x.after.check(),
        }
    }

    fn constraints_mut(&mut self) -> &mut Constraints {
        self.x.get_or_insert_with(|| {
            Box::new(Constraints {
                targets: HashSet::new(),
                blacklist: HashSet::new(),
                after: DepTrack::met(),
                follow: DepTrack::met(),
            })
        })
    }
}

#[derive(Debug)]
struct JobSlot {
    gen: u32,
    job: Option<Job>,
}

/// Jobs waiting on one msg_id (stock `graph[dep_id]`). A job stays registered while it
/// runs, so its dependency counts are always current; finished jobs leave stale refs that
/// are counted and compacted.
#[derive(Debug, Default)]
struct GraphEntry {
    waiters: Vec<JobRef>,
    stale: usize,
}

enum RunResult {
    Ran,
    NotRun,
    Failed,
}

/// Work accumulated while handling one event.
#[derive(Default)]
struct Effects {
    /// Finished ids whose dependents still have to be told (processed iteratively, so long
    /// failure cascades cannot overflow the stack).
    finished: VecDeque<(Arc<str>, bool, Option<u32>)>,
    /// Queued jobs whose `after` is met and that a finished dependency concerned.
    released: Vec<JobRef>,
    /// Rescan the whole waiting queue (stock `update_graph` with the full queue).
    full: bool,
}

/// The load-balanced task scheduler. See the crate docs for the semantics.
#[derive(Debug)]
pub struct TaskScheduler {
    scheme: Scheme,
    hwm: u32,
    rng: StdRng,
    engines: EngineTable,
    jobs: Vec<JobSlot>,
    free_jobs: Vec<u32>,
    hasher: IdHasher,
    ids: IdTable<JobRef>,
    queue: WaitQueue,
    /// Running jobs per engine slot (stock `pending[engine]`), unordered (swap-remove).
    pending: Vec<Vec<JobRef>>,
    graph: FastMap<Arc<str>, GraphEntry>,
    done: DoneMemory,
    next_seq: u64,
    next_stamp: u64,
}

fn slot_of(jobs: &[JobSlot], jr: JobRef) -> Option<&Job> {
    let s = jobs.get(jr.idx as usize)?;
    if s.gen == jr.gen {
        s.job.as_ref()
    } else {
        None
    }
}

fn slot_of_mut(jobs: &mut [JobSlot], jr: JobRef) -> Option<&mut Job> {
    let s = jobs.get_mut(jr.idx as usize)?;
    if s.gen == jr.gen {
        s.job.as_mut()
    } else {
        None
    }
}

impl TaskScheduler {
    /// `hwm`: most tasks outstanding per engine (stock `TaskScheduler.hwm`, default 1;
    /// 0 = unlimited). `seed` seeds the random schemes.
    pub fn new(scheme: Scheme, hwm: u32, seed: u64) -> Self {
        TaskScheduler {
            scheme,
            hwm,
            rng: StdRng::seed_from_u64(seed),
            engines: EngineTable::new(hwm, scheme),
            jobs: Vec::new(),
            free_jobs: Vec::new(),
            hasher: IdHasher::default(),
            ids: IdTable::default(),
            queue: WaitQueue::default(),
            pending: Vec::new(),
            graph: FastMap::default(),
            done: DoneMemory::new(DEFAULT_DONE_CAPACITY),
            next_seq: 0,
            next_stamp: 0,
        }
    }

    /// Remember at most `capacity` finished task ids (default 1,000,000, see
    /// [`DEFAULT_DONE_CAPACITY`]); older ones are forgotten first. A dependency on a
    /// forgotten id fails with `InvalidDependency`, like an id never submitted.
    pub fn with_done_capacity(mut self, capacity: usize) -> Self {
        self.done.set_capacity(capacity);
        self
    }

    /// Change the finished-id memory bound (evicts immediately if it shrinks).
    pub fn set_done_capacity(&mut self, capacity: usize) {
        self.done.set_capacity(capacity);
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn hwm(&self) -> u32 {
        self.hwm
    }

    /// Number of registered (live) engines.
    pub fn engine_count(&self) -> usize {
        self.engines.n_live()
    }

    /// Finished ids currently remembered, and how many were forgotten so far.
    pub fn done_memory(&self) -> (usize, u64) {
        (self.done.len(), self.done.forgotten())
    }

    /// Number of tasks queued or running.
    pub fn in_flight(&self) -> usize {
        self.ids.len()
    }

    // ------------------------------------------------------------------------------------
    // engines

    /// Engine registered: it goes to the front of the list with load 0 and the whole queue
    /// is rescanned. Registering a uuid that is already live does nothing. (`now` is not
    /// needed: rescans never re-queue; it is accepted for symmetry.)
    pub fn add_engine(&mut self, uuid: &str, _now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(slot) = self.engines.add(uuid) else {
            return out;
        };
        if self.pending.len() <= slot as usize {
            self.pending.resize_with(slot as usize + 1, Vec::new);
        }
        debug_assert!(self.pending[slot as usize].is_empty());
        let mut fx = Effects {
            full: true,
            ..Effects::default()
        };
        self.settle(&mut fx, &mut out);
        out
    }

    /// Engine gone: it gets no more work (no rescan, like stock). Returns the msg_ids it had
    /// pending, in assignment order ("stranded"). The shell should, after a grace period
    /// (stock: 5 s), call [`on_reply`](Self::on_reply) for each one still
    /// [pending](Self::is_pending) with [`Outcome::FAILED`] and relay a fabricated
    /// `EngineError` reply; real replies arriving meanwhile are processed normally (a second
    /// reply for the same task is ignored).
    pub fn remove_engine(&mut self, uuid: &str) -> Vec<String> {
        let Some((slot, load)) = self.engines.remove(uuid) else {
            return Vec::new();
        };
        if load == 0 {
            return Vec::new();
        }
        let mut stranded: Vec<(u64, &str)> = self.pending[slot as usize]
            .iter()
            .filter_map(|&jr| {
                let job = slot_of(&self.jobs, jr)?;
                match job.state {
                    JobState::Running { stamp, .. } => Some((stamp, &*job.msg_id)),
                    _ => None,
                }
            })
            .collect();
        stranded.sort_unstable();
        stranded.into_iter().map(|(_, id)| id.to_string()).collect()
    }

    // ------------------------------------------------------------------------------------
    // submission

    /// A client submitted a task (stock `dispatch_submission`).
    ///
    /// Order of checks: `after` already met is dropped (never validated); then for `after`
    /// and `follow` in turn: self-dependency or unknown id → `InvalidDependency`,
    /// unreachable → `ImpossibleDependency`. A valid task runs at once if an engine can take
    /// it (regardless of older queued tasks, like stock), else waits in the queue — also
    /// when there are no engines at all.
    ///
    /// A msg_id that is already in flight is refused with `InvalidDependency` without
    /// touching the running task.
    pub fn submit(&mut self, req: TaskRequest, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let hash = self.hasher.hash(&req.msg_id);
        if self.ids.contains(hash, &req.msg_id) {
            out.push(Action::Fail {
                error: SchedError::InvalidDependency(format!(
                    "msg_id {:?} is already queued or running in the task scheduler",
                    req.msg_id
                )),
                msg_id: req.msg_id,
            });
            return out;
        }
        let msg_id: Arc<str> = Arc::from(req.msg_id);
        let plain = req.after.is_empty() && req.follow.is_empty() && req.targets.is_empty();
        let (x, verdict) = if plain {
            // the hot path: nothing to validate, nothing to allocate
            (None, None)
        } else {
            let (after, follow) = {
                let hint = self.forgotten_hint();
                let lookup = |id: &str| self.lookup(id);
                let mut after = if req.after.is_empty() {
                    DepTrack::met()
                } else {
                    DepTrack::build(&req.after, &msg_id, &hint, lookup)
                };
                if after.check() {
                    // stock recasts an already-met `after` as MET, skipping its validation
                    after = DepTrack::met();
                }
                let follow = if req.follow.is_empty() {
                    DepTrack::met()
                } else {
                    DepTrack::build(&req.follow, &msg_id, &hint, lookup)
                };
                (after, follow)
            };
            let verdict = [("after", &after), ("follow", &follow)]
                .into_iter()
                .find_map(|(name, t)| {
                    if t.is_empty() {
                        None
                    } else if let Some(why) = &t.invalid {
                        Some(SchedError::InvalidDependency(why.clone()))
                    } else if t.unreachable() {
                        Some(SchedError::ImpossibleDependency(format!(
                            "task {msg_id:?}: its `{name}` dependencies can never be met"
                        )))
                    } else {
                        None
                    }
                });
            let x = Constraints {
                targets: req.targets.into_iter().map(Arc::from).collect(),
                blacklist: HashSet::new(),
                after,
                follow,
            };
            ((!x.is_trivial()).then(|| Box::new(x)), verdict)
        };
        let job = Job {
            msg_id: msg_id.clone(),
            hash,
            seq: self.next_seq,
            timeout: req.timeout,
            retries: req.retries,
            state: JobState::Floating,
            x,
        };
        self.next_seq += 1;
        let jr = self.alloc_job(job);
        self.ids.insert(hash, msg_id, jr);

        let mut fx = Effects::default();
        if let Some(err) = verdict {
            self.fail(jr, err, &mut out, &mut fx);
            self.note_finish(&mut fx);
        } else {
            self.register_deps(jr);
            let after_met = self.job(jr).is_some_and(Job::after_met);
            if after_met {
                match self.maybe_run(jr, &mut out, &mut fx) {
                    RunResult::Ran => {}
                    RunResult::Failed => self.note_finish(&mut fx),
                    RunResult::NotRun => self.enqueue(jr, now),
                }
            } else {
                self.enqueue(jr, now);
            }
        }
        self.settle(&mut fx, &mut out);
        out
    }

    /// Refuse a request whose metadata could not be parsed
    /// ([`TaskRequest::from_metadata`] failed): `Fail` with `InvalidDependency(reason)`, and
    /// the id is remembered as failed so later dependencies on it behave as in stock for a
    /// failed task. (Stock logs and drops such requests, leaving the client waiting.)
    pub fn reject(&mut self, msg_id: &str, reason: String, _now: Instant) -> Vec<Action> {
        let mut out = vec![Action::Fail {
            msg_id: msg_id.to_string(),
            error: SchedError::InvalidDependency(reason),
        }];
        let hash = self.hasher.hash(msg_id);
        if self.ids.contains(hash, msg_id) {
            return out;
        }
        let mut fx = Effects::default();
        self.finish_record(hash, Arc::from(msg_id), false, None, &mut fx);
        self.note_finish(&mut fx);
        self.settle(&mut fx, &mut out);
        out
    }

    // ------------------------------------------------------------------------------------
    // replies

    /// An `apply_reply` for `msg_id` came from `engine` (stock `dispatch_result`).
    ///
    /// * `dependencies_met == false` → the engine is blacklisted for this task and it is
    ///   placed elsewhere or re-queued (`ImpossibleDependency` once its blacklist equals its
    ///   targets);
    /// * failure with retries left → the same, consuming one retry;
    /// * otherwise final: `Relay { msg_id }` first, then whatever its completion releases.
    ///
    /// Replies that do not match a task running on `engine` (duplicates, unknown ids) are
    /// ignored and return nothing.
    pub fn on_reply(
        &mut self,
        engine: &str,
        msg_id: &str,
        outcome: Outcome,
        now: Instant,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(&jr) = self.ids.get(self.hasher.hash(msg_id), msg_id) else {
            return out;
        };
        let Some(JobState::Running { slot, idx, .. }) = self.job(jr).map(|j| j.state) else {
            return out;
        };
        let (inc, live) = {
            let e = self.engines.get(slot);
            if &*e.uuid != engine {
                return out;
            }
            (e.inc, e.live)
        };
        self.engines.unassign(slot);
        self.unpend(slot, idx);
        let job = self.job_mut(jr).expect("running job");
        job.state = JobState::Floating;
        let retry = outcome.dependencies_met && !outcome.ok && job.retries > 0;
        let mut fx = Effects::default();
        if outcome.dependencies_met && !retry {
            self.complete(jr, outcome.ok, Some(inc), &mut out, &mut fx);
            self.note_finish(&mut fx);
        } else {
            if retry {
                job.retries -= 1;
            }
            // (a dead engine's slot may have been freed by `unassign`: use the name given)
            let uuid: Arc<str> = Arc::from(engine);
            self.handle_unmet(jr, uuid, live.then_some(slot), now, &mut out, &mut fx);
        }
        self.settle(&mut fx, &mut out);
        out
    }

    /// Stock `handle_unmet_dependency` (also used for retries).
    fn handle_unmet(
        &mut self,
        jr: JobRef,
        engine: Arc<str>,
        live_slot: Option<u32>,
        now: Instant,
        out: &mut Vec<Action>,
        fx: &mut Effects,
    ) {
        let job = self.job_mut(jr).expect("job");
        let x = job.constraints_mut();
        x.blacklist.insert(engine);
        if x.blacklist == x.targets {
            let err = SchedError::ImpossibleDependency(format!(
                "task {:?} was refused by or failed on every one of its target engines",
                job.msg_id
            ));
            self.fail(jr, err, out, fx);
            self.note_finish(fx);
        } else {
            match self.maybe_run(jr, out, fx) {
                RunResult::Ran => {}
                RunResult::Failed => self.note_finish(fx),
                RunResult::NotRun => self.enqueue(jr, now),
            }
        }
        if let Some(slot) = live_slot {
            if self.hwm > 0 && self.engines.get(slot).load == self.hwm - 1 {
                fx.full = true;
            }
        }
    }

    // ------------------------------------------------------------------------------------
    // time

    /// Fail every queued task whose timeout expired at `now` with `TaskTimeout`, then place
    /// whatever that releases. Tasks that are running are never timed out.
    pub fn poll_timeouts(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let mut fx = Effects::default();
        while let Some(jr) = self.queue.pop_expired(now) {
            let Some(job) = self.job_mut(jr) else {
                continue;
            };
            if let JobState::Queued { pos, place, .. } = job.state {
                // the timer entry is gone already
                job.state = JobState::Queued {
                    pos,
                    place,
                    deadline: None,
                };
            }
            let err = SchedError::TaskTimeout(format!(
                "task {:?} waited longer than its timeout ({:?}) for an engine",
                job.msg_id,
                job.timeout.unwrap_or_default()
            ));
            self.fail(jr, err, &mut out, &mut fx);
            self.note_finish(&mut fx);
        }
        self.settle(&mut fx, &mut out);
        out
    }

    /// When [`poll_timeouts`](Self::poll_timeouts) next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.next_deadline()
    }

    // ------------------------------------------------------------------------------------
    // queries

    /// Live engines in stock list order (least recently assigned first) with their number
    /// of pending tasks. Engines already removed (even with stranded tasks) are not listed.
    pub fn loads(&self) -> impl Iterator<Item = (&str, usize)> + '_ {
        self.engines.iter_lru().map(|e| (&*e.uuid, e.load as usize))
    }

    /// Tasks waiting in the scheduler (not assigned to an engine).
    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }

    /// Queued or running.
    pub fn is_pending(&self, msg_id: &str) -> bool {
        self.ids.contains(self.hasher.hash(msg_id), msg_id)
    }

    /// The engine a running task was sent to (also for a removed engine whose stranded
    /// task has not been answered yet).
    pub fn engine_of(&self, msg_id: &str) -> Option<&str> {
        let jr = self.ids.get(self.hasher.hash(msg_id), msg_id)?;
        match self.job(*jr)?.state {
            JobState::Running { slot, .. } => Some(&self.engines.get(slot).uuid),
            _ => None,
        }
    }

    // ------------------------------------------------------------------------------------
    // internals

    fn job(&self, jr: JobRef) -> Option<&Job> {
        slot_of(&self.jobs, jr)
    }

    fn job_mut(&mut self, jr: JobRef) -> Option<&mut Job> {
        slot_of_mut(&mut self.jobs, jr)
    }

    fn alloc_job(&mut self, job: Job) -> JobRef {
        match self.free_jobs.pop() {
            Some(idx) => {
                let s = &mut self.jobs[idx as usize];
                s.job = Some(job);
                JobRef { idx, gen: s.gen }
            }
            None => {
                let idx = u32::try_from(self.jobs.len()).expect("fewer than 2^32 jobs in flight");
                self.jobs.push(JobSlot {
                    gen: 0,
                    job: Some(job),
                });
                JobRef { idx, gen: 0 }
            }
        }
    }

    fn lookup(&self, id: &str) -> Known {
        let hash = self.hasher.hash(id);
        if let Some((k, _)) = self.ids.get_key_value(hash, id) {
            Known::InFlight(k.clone())
        } else if let Some(d) = self.done.get(hash, id) {
            Known::Done {
                ok: d.ok,
                engine: d.engine,
            }
        } else {
            Known::Unknown
        }
    }

    fn forgotten_hint(&self) -> String {
        if self.done.forgotten() > 0 {
            format!(
                ", or finished so long ago that it was forgotten (the scheduler remembers the \
                 last {} finished tasks)",
                self.done.capacity()
            )
        } else {
            String::new()
        }
    }

    /// Register a job under each dependency still in flight (stock `save_unmet`'s graph
    /// update, done once at submission and kept while the job lives).
    fn register_deps(&mut self, jr: JobRef) {
        let Some(x) = slot_of(&self.jobs, jr).and_then(|j| j.x.as_ref()) else {
            return;
        };
        for id in x.outstanding() {
            self.graph.entry(id.clone()).or_default().waiters.push(jr);
        }
    }

    /// Remove a job from the slab, the id map, the queue and (lazily) the graph.
    fn take_job(&mut self, jr: JobRef) -> Job {
        let slot = &mut self.jobs[jr.idx as usize];
        debug_assert_eq!(slot.gen, jr.gen);
        let job = slot.job.take().expect("live job");
        slot.gen = slot.gen.wrapping_add(1);
        self.free_jobs.push(jr.idx);
        if let JobState::Queued {
            pos,
            place,
            deadline,
        } = job.state
        {
            self.queue.remove(pos, place, deadline);
        }
        self.ids.remove(job.hash, &job.msg_id);
        // the graph still refers to this job under its unresolved dependencies
        for id in job.x.iter().flat_map(|x| x.outstanding()) {
            if let Some(entry) = self.graph.get_mut(&**id) {
                entry.stale += 1;
                if entry.stale > 8 && entry.stale * 2 > entry.waiters.len() {
                    let jobs = &self.jobs;
                    entry.waiters.retain(|w| slot_of(jobs, *w).is_some());
                    entry.stale = 0;
                    if entry.waiters.is_empty() {
                        self.graph.remove(&**id);
                    }
                }
            }
        }
        job
    }

    fn finish_record(
        &mut self,
        hash: u64,
        id: Arc<str>,
        ok: bool,
        engine: Option<u32>,
        fx: &mut Effects,
    ) {
        if !self.graph.is_empty() && self.graph.contains_key(&id) {
            fx.finished.push_back((id.clone(), ok, engine));
        }
        self.done.record(hash, id, ok, engine);
    }

    /// Stock `fail_unreachable`.
    fn fail(&mut self, jr: JobRef, error: SchedError, out: &mut Vec<Action>, fx: &mut Effects) {
        let job = self.take_job(jr);
        out.push(Action::Fail {
            msg_id: job.msg_id.to_string(),
            error,
        });
        self.finish_record(job.hash, job.msg_id, false, None, fx);
    }

    /// Stock `handle_result`.
    fn complete(
        &mut self,
        jr: JobRef,
        ok: bool,
        engine: Option<u32>,
        out: &mut Vec<Action>,
        fx: &mut Effects,
    ) {
        let job = self.take_job(jr);
        out.push(Action::Relay {
            msg_id: job.msg_id.to_string(),
        });
        self.finish_record(job.hash, job.msg_id, ok, engine, fx);
    }

    /// After a task finished or failed (stock `update_graph(msg_id)`): rescan the whole
    /// queue if some engine is at `hwm - 1` load, else only the released dependents.
    fn note_finish(&self, fx: &mut Effects) {
        if self.hwm > 0 && self.engines.n_at_hwm_minus_1() > 0 {
            fx.full = true;
        }
    }

    /// Stock `save_unmet`: append to the queue; arm the timeout.
    fn enqueue(&mut self, jr: JobRef, now: Instant) {
        let job = slot_of_mut(&mut self.jobs, jr).expect("job");
        let deadline = job.timeout.and_then(|t| now.checked_add(t));
        let (pos, place) = self.queue.push(jr, job.after_met(), deadline);
        job.state = JobState::Queued {
            pos,
            place,
            deadline,
        };
    }

    /// Stock `maybe_run`: place the job on an engine if one qualifies; otherwise check
    /// whether it has become impossible.
    fn maybe_run(&mut self, jr: JobRef, out: &mut Vec<Action>, fx: &mut Effects) -> RunResult {
        if self.engines.n_avail() == 0 {
            // no engine has capacity (or there are none): definitely can't run
            return RunResult::NotRun;
        }
        let job = slot_of(&self.jobs, jr).expect("job");
        let chosen = match &job.x {
            None => self.engines.choose_any(&mut self.rng),
            Some(x) => {
                let among: Option<Vec<u32>> = match x.follow.allowed_engines() {
                    Some(incs) => Some(
                        incs.iter()
                            .filter_map(|&i| self.engines.live_slot_by_inc(i))
                            .collect(),
                    ),
                    None if !x.targets.is_empty() => Some(
                        x.targets
                            .iter()
                            .filter_map(|u| self.engines.live_slot(u))
                            .collect(),
                    ),
                    None => None,
                };
                let (targets, blacklist) = (&x.targets, &x.blacklist);
                self.engines.choose_where(&mut self.rng, among, |e| {
                    !blacklist.contains(&*e.uuid)
                        && (targets.is_empty() || targets.contains(&*e.uuid))
                })
            }
        };
        if let Some(slot) = chosen {
            self.run_on(jr, slot, out);
            return RunResult::Ran;
        }
        // couldn't run: is it impossible?
        let job = slot_of_mut(&mut self.jobs, jr).expect("job");
        let Some(x) = job.x.as_mut() else {
            return RunResult::NotRun;
        };
        if x.follow.follow_impossible() {
            let err = SchedError::ImpossibleDependency(format!(
                "task {:?} must follow tasks that ran on different engines",
                job.msg_id
            ));
            self.fail(jr, err, out, fx);
            return RunResult::Failed;
        }
        if !x.targets.is_empty() {
            let Constraints {
                targets, blacklist, ..
            } = &mut **x;
            targets.retain(|t| !blacklist.contains(t));
            if !targets.iter().any(|t| self.engines.live_slot(t).is_some()) {
                let err = SchedError::ImpossibleDependency(format!(
                    "none of the target engines of task {:?} is registered and not blacklisted",
                    job.msg_id
                ));
                self.fail(jr, err, out, fx);
                return RunResult::Failed;
            }
        }
        RunResult::NotRun
    }

    /// Remove entry `idx` of `pending[slot]`, fixing the index of the entry moved into it.
    fn unpend(&mut self, slot: u32, idx: u32) {
        let pending = &mut self.pending[slot as usize];
        pending.swap_remove(idx as usize);
        if let Some(&moved) = pending.get(idx as usize) {
            if let Some(JobState::Running { idx: i, .. }) =
                slot_of_mut(&mut self.jobs, moved).map(|j| &mut j.state)
            {
                *i = idx;
            }
        }
    }

    /// Stock `submit_task`.
    fn run_on(&mut self, jr: JobRef, slot: u32, out: &mut Vec<Action>) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        let job = slot_of_mut(&mut self.jobs, jr).expect("job");
        if let JobState::Queued {
            pos,
            place,
            deadline,
        } = job.state
        {
            self.queue.remove(pos, place, deadline);
        }
        let pending = &mut self.pending[slot as usize];
        let idx = u32::try_from(pending.len()).expect("fewer than 2^32 tasks per engine");
        pending.push(jr);
        job.state = JobState::Running { slot, stamp, idx };
        self.engines.assign(slot);
        out.push(Action::Run {
            msg_id: job.msg_id.to_string(),
            engine: self.engines.get(slot).uuid.to_string(),
        });
    }

    /// Tell dependents about finished ids (stock: the first half of `update_graph`), failing
    /// the ones that became unreachable (which may cascade) and collecting the queued ones
    /// whose `after` is now met.
    fn drain_finished(&mut self, out: &mut Vec<Action>, fx: &mut Effects) {
        while let Some((id, ok, engine)) = fx.finished.pop_front() {
            let Some(entry) = self.graph.remove(&*id) else {
                continue;
            };
            for w in entry.waiters {
                let Some(job) = slot_of_mut(&mut self.jobs, w) else {
                    continue; // finished meanwhile
                };
                let Some(x) = job.x.as_mut() else {
                    continue; // (cannot happen: only jobs with dependencies are in the graph)
                };
                x.after.resolve(&id, ok, engine);
                x.follow.resolve(&id, ok, engine);
                let JobState::Queued {
                    pos,
                    place,
                    deadline,
                } = job.state
                else {
                    continue; // running: nothing to decide now
                };
                if x.after.unreachable() || x.follow.unreachable() {
                    let err = SchedError::ImpossibleDependency(format!(
                        "task {:?}: dependency {:?} {}, so its dependencies can never be met",
                        job.msg_id,
                        id,
                        if ok { "succeeded" } else { "failed" }
                    ));
                    self.fail(w, err, out, fx);
                } else if x.after.check() {
                    if place == Place::Blocked {
                        let place = self.queue.make_ready(pos, w);
                        job.state = JobState::Queued {
                            pos,
                            place,
                            deadline,
                        };
                    }
                    fx.released.push(w);
                }
            }
        }
    }

    /// Run the consequences of an event to completion.
    fn settle(&mut self, fx: &mut Effects, out: &mut Vec<Action>) {
        loop {
            self.drain_finished(out, fx);
            if fx.full {
                fx.full = false;
                fx.released.clear(); // covered by the full scan
                self.full_scan(out, fx);
            } else if !fx.released.is_empty() {
                let released = std::mem::take(&mut fx.released);
                self.released_scan(released, out, fx);
            } else if fx.finished.is_empty() {
                break;
            }
        }
    }

    /// Stock `update_graph(None)`: try every ready job in queue order until no engine has
    /// capacity. Jobs whose `after` is unmet are skipped: they cannot run, and their
    /// reachability is re-checked whenever one of their dependencies finishes.
    fn full_scan(&mut self, out: &mut Vec<Action>, fx: &mut Effects) {
        let mut from = 0;
        while self.engines.n_avail() > 0 {
            let Some((pos, jr)) = self.queue.next_ready(from) else {
                break;
            };
            from = pos + 1;
            self.maybe_run(jr, out, fx);
        }
    }

    /// Stock `update_graph(dep_id)` without the full-queue condition: try the released jobs
    /// in submission order until no engine has capacity.
    fn released_scan(&mut self, mut jobs: Vec<JobRef>, out: &mut Vec<Action>, fx: &mut Effects) {
        jobs.sort_unstable_by_key(|&jr| self.job(jr).map_or(u64::MAX, |j| j.seq));
        jobs.dedup();
        for jr in jobs {
            if self.engines.n_avail() == 0 {
                break;
            }
            let queued = matches!(
                self.job(jr).map(|j| j.state),
                Some(JobState::Queued { place, .. }) if place != Place::Blocked
            );
            if queued {
                self.maybe_run(jr, out, fx);
            }
        }
    }

    /// Internal consistency (tests): loads equal running jobs, queue length equals queued
    /// jobs, id map equals live jobs.
    #[cfg(test)]
    pub(crate) fn assert_consistent(&self) {
        self.engines.assert_consistent();
        let mut queued = 0;
        let mut running: std::collections::HashMap<u32, u32> = Default::default();
        let mut live = 0;
        for (idx, s) in self.jobs.iter().enumerate() {
            let Some(job) = &s.job else { continue };
            live += 1;
            let jr = JobRef {
                idx: idx as u32,
                gen: s.gen,
            };
            assert_eq!(self.ids.get(job.hash, &job.msg_id), Some(&jr));
            match job.state {
                JobState::Floating => panic!("floating job {:?} after a call", job.msg_id),
                JobState::Queued { place, .. } => {
                    queued += 1;
                    assert_eq!(place != Place::Blocked, job.after_met());
                }
                JobState::Running { slot, idx, .. } => {
                    *running.entry(slot).or_default() += 1;
                    assert_eq!(self.pending[slot as usize][idx as usize], jr);
                }
            }
        }
        assert_eq!(live, self.ids.len());
        assert_eq!(queued, self.queue.len());
        for (slot, n) in running {
            assert_eq!(self.engines.get(slot).load, n);
            assert_eq!(self.pending[slot as usize].len(), n as usize);
        }
        for e in self.engines.iter_lru() {
            assert!(self.hwm == 0 || e.load <= self.hwm);
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
