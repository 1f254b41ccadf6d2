//! Sans-IO core of the oxipp load-balanced task scheduler, behaviour-compatible with stock
//! `ipyparallel==9.2.0`'s Python `TaskScheduler` (spec §3.5).
//!
//! The controller's socket shell owns the raw frames. It tells the [`TaskScheduler`] about
//! engines ([`add_engine`](TaskScheduler::add_engine) /
//! [`remove_engine`](TaskScheduler::remove_engine)), requests
//! ([`submit`](TaskScheduler::submit) with a [`TaskRequest`] built by
//! [`TaskRequest::from_metadata`]), replies ([`on_reply`](TaskScheduler::on_reply) with an
//! [`Outcome`]) and time ([`poll_timeouts`](TaskScheduler::poll_timeouts) at
//! [`next_deadline`](TaskScheduler::next_deadline)), and carries out the returned
//! [`Action`]s in order. No sockets, no clocks (time is passed in), and randomness comes
//! from a seeded `StdRng`, so runs are reproducible.
//!
//! # Semantics kept from stock
//! * Engines form an LRU list: new engines go to the front with load 0, an engine that gets
//!   a task moves to the end. `leastload` takes the first engine with the minimum load in
//!   that order; `lru` the first; `plainrandom` a uniform one; `twobin` the earlier of two
//!   uniform picks; `weighted` the less loaded of two picks weighted by `1/(1e-6+load)`.
//! * Candidates: load < hwm (all if hwm = 0), not blacklisted, in `targets` if given, and
//!   passing `follow` on that engine's own completed/failed tasks.
//! * No candidate → `ImpossibleDependency` if `follow.all` and its satisfying ids ran on
//!   more than one engine, or if `targets` minus the blacklist has no registered engine;
//!   otherwise the task waits (also when there are no engines at all).
//! * Retries and `dependencies_met=false` replies blacklist the engine and re-place the task
//!   (with every engine blacklisted it waits until its timeout → `TaskTimeout`).
//! * Timeouts only cover waiting in the scheduler and are re-armed at every (re-)queue.
//! * The waiting queue is rescanned in FIFO order when an engine registers and after a
//!   reply/failure when some engine is at `hwm - 1` load; otherwise only the tasks released
//!   by a finished dependency are tried. Scans stop as soon as no engine has capacity.
//!
//! # For the shell (controller) author
//! * Carry out actions in order. `Run` = send the stored request to that engine and tell the
//!   Hub (`task_destination`); `Relay` = forward the engine reply to the client and copy it
//!   to the Hub (`outtask`); `Fail` = reply to the client with a wrapped
//!   [`SchedError::ename`] exception (`engine_info: {}`, metadata `{}`, no engine frame)
//!   and record it. After `Relay`/`Fail` the scheduler has forgotten the task: drop the
//!   stored request frames.
//! * A final reply yields `Relay` first, then the actions its completion released.
//! * Stranded tasks: [`TaskScheduler::remove_engine`] returns the dead engine's pending
//!   msg_ids; after the grace period (stock: 5 s) call `on_reply(dead_uuid, id,
//!   Outcome::FAILED, now)` for each one still [`is_pending`](TaskScheduler::is_pending)
//!   and, if that yields `Relay`, send the fabricated `EngineError` reply (with the dead
//!   engine's uuid as routing frame). Replies that match no running task are ignored.
//! * Call [`poll_timeouts`](TaskScheduler::poll_timeouts) when
//!   [`next_deadline`](TaskScheduler::next_deadline) passes (it may also yield `Run`s).
//! * Malformed metadata: [`TaskRequest::from_metadata`] returns `Err`; pass the message to
//!   [`TaskScheduler::reject`] to answer with `InvalidDependency`.
//! * `TaskScheduler` is `Send` (own it from the scheduler thread); it never blocks.
//! * Cost: a dependency-free task is O(1) amortized in the queue length and O(log E) in
//!   the number of engines for `leastload`/`lru`/`plainrandom`/`twobin` (O(E) for
//!   `weighted`), ~1 µs per task (submit + run + reply) on this project's machine.
//!
//! # Deliberate differences (all in corner cases where stock misbehaves)
//! * Memory is bounded: only the last [`DEFAULT_DONE_CAPACITY`] finished ids are remembered
//!   (configurable with [`TaskScheduler::with_done_capacity`]; ~120 bytes per id); a new
//!   dependency on a forgotten id is `InvalidDependency` (the message says it may have been
//!   forgotten). Tasks already waiting are unaffected: they record each dependency's outcome
//!   as it finishes. See [`memory`].
//! * Stock's rescan restores skipped tasks with `deque.extendleft`, which reverses their
//!   order; here queue order is always FIFO (by time of last enqueue).
//! * Stock leaves a task that ran via the dependency-release path in its queue, so a later
//!   full rescan can send it a second time; here a task leaves the queue when it runs.
//! * A queued task whose dependencies become unreachable is failed as soon as that happens
//!   (stock may only notice at a later rescan). Failures found *during* a rescan release
//!   their dependents without restarting the rescan (stock nests a second rescan, which by
//!   construction finds nothing new to run).
//! * `follow` with `failure=True` on a task the scheduler itself failed (it never ran
//!   anywhere) is `ImpossibleDependency`; stock raises `KeyError` and drops the request.
//! * An engine re-registering under a live uuid is ignored; under the uuid of a removed
//!   engine it is a new engine (stock resets its per-engine sets the same way), and its
//!   stranded tasks still belong to the old one.
//! * A submission whose msg_id is already in flight is refused with `InvalidDependency`.
//! * Errors carry an explanatory `evalue` (stock: empty string).

pub mod dependency;
mod engines;
pub mod error;
mod idtable;
pub mod memory;
mod queue;
pub mod request;
pub mod scheduler;
pub mod scheme;

/// HashMap with a fast seeded hasher, for the maps every task touches.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub use dependency::Dependency;
pub use error::SchedError;
pub use memory::DEFAULT_DONE_CAPACITY;
pub use request::TaskRequest;
pub use scheduler::{Action, Outcome, TaskScheduler};
pub use scheme::Scheme;
