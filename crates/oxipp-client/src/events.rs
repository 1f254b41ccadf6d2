//! What the receiving thread hands to the Python layer, and the queue it waits on.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use oxipp_wire::Frame;

/// Where a message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Query,
    Mux,
    Task,
    Control,
    Broadcast,
    IOPub,
    Notification,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Query => "query",
            Source::Mux => "mux",
            Source::Task => "task",
            Source::Control => "control",
            Source::Broadcast => "broadcast",
            Source::IOPub => "iopub",
            Source::Notification => "notification",
        }
    }
}

/// One verified message. JSON parts stay raw bytes: Python decodes what it reads.
#[derive(Debug)]
pub struct Event {
    pub source: Source,
    pub msg_type: String,
    /// `parent_header.msg_id`, when there is one.
    pub parent_id: Option<String>,
    /// The routing frames before the delimiter (the engine uuid for relayed replies, topics
    /// on IOPub).
    pub idents: Vec<Frame>,
    pub header: Frame,
    pub parent: Frame,
    pub metadata: Frame,
    pub content: Frame,
    pub buffers: Vec<Frame>,
}

/// How long after a foreground waiter left the background waiter keeps its hands off new
/// events. A thread that waits for results in a loop (`apply_sync`, `get`) is back within
/// microseconds and takes them itself; without the pause the background thread would wake for
/// every trailing event (a `status: idle` after each reply) and compete for the CPU.
pub const LINGER: Duration = Duration::from_millis(2);

/// The queue between the IO thread and the Python threads that handle events.
///
/// Two kinds of waiter: *foreground* ones (a user thread blocked on a result, which handles
/// the events itself, so a reply reaches it without a hand-off through another thread) and
/// one *background* waiter (the client's dispatcher), which handles events only while no
/// foreground waiter is there and [`LINGER`] has passed since the last one left. Waiting does
/// not take events: [`EventQueue::take_now`] does, so that the caller can take and handle a
/// batch under one lock and batches are handled in arrival order.
#[derive(Default)]
pub struct EventQueue {
    inner: Mutex<State>,
    /// Foreground waiters.
    fg: Condvar,
    /// The background waiter.
    bg: Condvar,
    /// The IO thread, while foreground waiters receive for themselves.
    io: Condvar,
}

#[derive(Default)]
struct State {
    events: VecDeque<Event>,
    closed: bool,
    fg_waiters: usize,
    /// Bumped by [`EventQueue::kick`]: foreground waiters re-check their own condition.
    generation: u64,
    last_fg_exit: Option<Instant>,
    /// The background waiter sleeps without a deadline and must be notified of work.
    bg_parked: bool,
    /// The IO thread sleeps without a deadline until the last foreground waiter leaves.
    io_parked: bool,
    /// The IO thread is to stop ([`EventQueue::stop_io`]).
    io_stop: bool,
}

/// Why a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Events are waiting to be taken (or, for a foreground waiter, it was kicked).
    Ready,
    TimedOut,
    /// Closed and every event taken.
    Closed,
}

impl State {
    fn lingering(&self, now: Instant) -> Option<Duration> {
        let left = self.last_fg_exit?;
        LINGER.checked_sub(now.duration_since(left))
    }
}

fn relock<T>(r: Result<T, std::sync::PoisonError<T>>) -> T {
    r.unwrap_or_else(|p| p.into_inner())
}

impl EventQueue {
    pub fn push_all(&self, batch: Vec<Event>) {
        if batch.is_empty() {
            return;
        }
        let mut s = relock(self.inner.lock());
        s.events.extend(batch);
        if s.fg_waiters > 0 {
            drop(s);
            self.fg.notify_all();
        } else if s.bg_parked {
            drop(s);
            self.bg.notify_one();
        }
    }

    pub fn close(&self) {
        relock(self.inner.lock()).closed = true;
        self.fg.notify_all();
        self.bg.notify_all();
    }

    /// Up to `max` events, waiting up to `timeout` (`None` = forever) for the first one.
    /// `None` when closed and drained. (A background-style wait that takes at once.)
    pub fn take(&self, timeout: Option<Duration>, max: usize) -> Option<Vec<Event>> {
        match self.wait_background(timeout) {
            Wake::Closed => None,
            Wake::TimedOut => Some(Vec::new()),
            Wake::Ready => Some(self.take_now(max).unwrap_or_default()),
        }
    }

    /// Up to `max` events without waiting; `None` when closed and drained.
    pub fn take_now(&self, max: usize) -> Option<Vec<Event>> {
        let mut s = relock(self.inner.lock());
        if s.events.is_empty() && s.closed {
            return None;
        }
        let n = s.events.len().min(max.max(1));
        Some(s.events.drain(..n).collect())
    }

    /// Marks that a batch was handled (results may have come in) and wakes every foreground
    /// waiter to re-check its own condition.
    pub fn kick(&self) {
        let mut s = relock(self.inner.lock());
        s.generation = s.generation.wrapping_add(1);
        if s.fg_waiters == 0 {
            return;
        }
        drop(s);
        self.fg.notify_all();
    }

    /// The count of [`EventQueue::kick`]s so far. A waiter reads it before checking its
    /// condition and passes it to [`EventQueue::wait_foreground`], so that a batch handled
    /// by another thread in between is not slept through.
    pub fn generation(&self) -> u64 {
        relock(self.inner.lock()).generation
    }

    /// Waits as a foreground waiter until events are there, a kick since `seen` (the
    /// [`EventQueue::generation`] read before the caller checked its condition; None = now),
    /// the timeout or close. (Without receiving: the client core's waiters also receive, see
    /// `Core::wait_foreground`; this is that loop without the receiving, for tests.)
    #[cfg(test)]
    pub fn wait_foreground(&self, timeout: Option<Duration>, seen: Option<u64>) -> Wake {
        let deadline = timeout.map(|t| Instant::now() + t);
        let seen = self.enter_foreground(seen);
        let wake = loop {
            if let Some(w) = self.foreground_check(seen) {
                break w;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break Wake::TimedOut;
            }
            self.foreground_sleep(seen, deadline, || false);
        };
        self.leave_foreground();
        wake
    }

    /// Counts the caller as a foreground waiter until [`EventQueue::leave_foreground`];
    /// returns the generation it waits past (`seen`, or the current one).
    pub fn enter_foreground(&self, seen: Option<u64>) -> u64 {
        let mut s = relock(self.inner.lock());
        s.fg_waiters += 1;
        seen.unwrap_or(s.generation)
    }

    /// Why a foreground waiter that entered at generation `seen` should stop waiting, if it
    /// should.
    pub fn foreground_check(&self, seen: u64) -> Option<Wake> {
        let s = relock(self.inner.lock());
        Self::fg_ready(&s, seen)
    }

    fn fg_ready(s: &State, seen: u64) -> Option<Wake> {
        if !s.events.is_empty() || s.generation != seen {
            Some(Wake::Ready)
        } else if s.closed {
            Some(Wake::Closed)
        } else {
            None
        }
    }

    /// Sleeps until notified (events, a kick, close, [`EventQueue::nudge`]) or `deadline`,
    /// unless the foreground check already passes or `retry()`, asked under the queue's lock
    /// (so a nudge after it is not missed), says the caller has something else to try.
    pub fn foreground_sleep(
        &self,
        seen: u64,
        deadline: Option<Instant>,
        retry: impl FnOnce() -> bool,
    ) {
        let s = relock(self.inner.lock());
        if Self::fg_ready(&s, seen).is_some() || retry() {
            return;
        }
        match deadline {
            None => drop(relock(self.fg.wait(s))),
            Some(d) => {
                let now = Instant::now();
                if now < d {
                    drop(relock(self.fg.wait_timeout(s, d - now)));
                }
            }
        }
    }

    /// Ends [`EventQueue::enter_foreground`].
    pub fn leave_foreground(&self) {
        let mut s = relock(self.inner.lock());
        s.fg_waiters -= 1;
        if s.fg_waiters > 0 {
            return;
        }
        s.last_fg_exit = Some(Instant::now());
        // sleepers without a deadline must learn of the linger's start: the IO thread (to
        // receive again once it is over) and the background waiter if events are left
        let wake_bg = s.bg_parked && !s.events.is_empty();
        let wake_io = s.io_parked;
        drop(s);
        if wake_bg {
            self.bg.notify_one();
        }
        if wake_io {
            self.io.notify_one();
        }
    }

    /// Wakes the foreground waiters to re-check (the receiving turn became free).
    pub fn nudge(&self) {
        let s = relock(self.inner.lock());
        if s.fg_waiters > 0 {
            drop(s);
            self.fg.notify_all();
        }
    }

    /// True while foreground waiters receive for themselves: some are waiting, or the last
    /// one left less than [`LINGER`] ago (it is likely back at once).
    pub fn foreground_active(&self) -> bool {
        let s = relock(self.inner.lock());
        s.fg_waiters > 0 || s.lingering(Instant::now()).is_some()
    }

    /// The IO thread's wait for its turn to receive: returns true when no foreground waiter
    /// is active, false when the IO thread is to stop.
    pub fn wait_io_turn(&self) -> bool {
        let mut s = relock(self.inner.lock());
        loop {
            if s.io_stop {
                return false;
            }
            if s.fg_waiters == 0 {
                match s.lingering(Instant::now()) {
                    None => return true,
                    Some(p) => s = relock(self.io.wait_timeout(s, p)).0,
                }
                continue;
            }
            s.io_parked = true;
            s = relock(self.io.wait(s));
            s.io_parked = false;
        }
    }

    /// Makes [`EventQueue::wait_io_turn`] return false from now on.
    pub fn stop_io(&self) {
        relock(self.inner.lock()).io_stop = true;
        self.io.notify_all();
    }

    /// Waits as the background waiter until events are there and no foreground waiter has
    /// been around for [`LINGER`], or the timeout, or close.
    pub fn wait_background(&self, timeout: Option<Duration>) -> Wake {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut s = relock(self.inner.lock());
        loop {
            let now = Instant::now();
            if s.events.is_empty() && s.closed {
                return Wake::Closed;
            }
            let remaining = match deadline {
                Some(d) if now >= d => return Wake::TimedOut,
                Some(d) => Some(d - now),
                None => None,
            };
            if s.fg_waiters == 0 {
                match s.lingering(now) {
                    None if !s.events.is_empty() || s.closed => return Wake::Ready,
                    None => {}
                    Some(p) => {
                        // a foreground waiter just left and is likely back at once: leave
                        // the events to it for now
                        let p = remaining.map_or(p, |r| r.min(p));
                        s = relock(self.bg.wait_timeout(s, p)).0;
                        continue;
                    }
                }
            }
            // nothing to do, or a foreground waiter takes care of it: sleep until notified
            // (new events with nobody in the foreground, the last foreground waiter leaving
            // events behind, close)
            s.bg_parked = true;
            s = match remaining {
                None => relock(self.bg.wait(s)),
                Some(r) => relock(self.bg.wait_timeout(s, r)).0,
            };
            s.bg_parked = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn event() -> Event {
        Event {
            source: Source::Mux,
            msg_type: "apply_reply".into(),
            parent_id: None,
            idents: vec![],
            header: Frame::new(),
            parent: Frame::new(),
            metadata: Frame::new(),
            content: Frame::new(),
            buffers: vec![],
        }
    }

    #[test]
    fn a_foreground_waiter_gets_events_and_the_background_waits_out_the_linger() {
        let q = Arc::new(EventQueue::default());
        let q2 = Arc::clone(&q);
        let fg = std::thread::spawn(move || q2.wait_foreground(Some(Duration::from_secs(5)), None));
        while relock(q.inner.lock()).fg_waiters == 0 {
            std::thread::yield_now();
        }
        // the foreground thread leaves after this push: the background waiter does not take
        // the event before the linger is over, but does take it then. Timed from before the
        // push, a lower bound that holds however late this thread is scheduled (timed from
        // the join, a preempted test thread saw the linger already over: flaky under load)
        let pushed = Instant::now();
        q.push_all(vec![event()]);
        assert_eq!(fg.join().unwrap(), Wake::Ready);
        assert_eq!(q.wait_background(Some(Duration::from_secs(5))), Wake::Ready);
        assert!(pushed.elapsed() >= LINGER, "{:?}", pushed.elapsed());
        assert_eq!(q.take_now(10).unwrap().len(), 1);
        assert_eq!(
            q.wait_background(Some(Duration::from_millis(1))),
            Wake::TimedOut
        );
    }

    #[test]
    fn a_parked_background_waiter_wakes_for_events_and_close() {
        let q = Arc::new(EventQueue::default());
        let q2 = Arc::clone(&q);
        let bg = std::thread::spawn(move || q2.take(None, 10));
        while !relock(q.inner.lock()).bg_parked {
            std::thread::yield_now();
        }
        q.push_all(vec![event(), event()]);
        assert_eq!(bg.join().unwrap().unwrap().len(), 2);
        let q3 = Arc::clone(&q);
        let bg = std::thread::spawn(move || q3.wait_background(None));
        while !relock(q.inner.lock()).bg_parked {
            std::thread::yield_now();
        }
        q.close();
        assert_eq!(bg.join().unwrap(), Wake::Closed);
        assert!(q.take_now(1).is_none());
    }

    #[test]
    fn kick_wakes_foreground_waiters_without_events() {
        let q = Arc::new(EventQueue::default());
        let q2 = Arc::clone(&q);
        let fg = std::thread::spawn(move || q2.wait_foreground(None, None));
        while relock(q.inner.lock()).fg_waiters == 0 {
            std::thread::yield_now();
        }
        q.kick();
        assert_eq!(fg.join().unwrap(), Wake::Ready);
        assert_eq!(q.take_now(5).unwrap().len(), 0);
    }

    #[test]
    fn a_kick_before_the_wait_is_not_slept_through() {
        // the waiter read the generation, then another thread handled a batch (and kicked)
        // before the waiter got to wait: it must not sleep
        let q = EventQueue::default();
        let seen = q.generation();
        q.kick();
        assert_eq!(
            q.wait_foreground(Some(Duration::from_secs(5)), Some(seen)),
            Wake::Ready
        );
        assert_eq!(
            q.wait_foreground(Some(Duration::from_millis(1)), Some(q.generation())),
            Wake::TimedOut
        );
    }
}
