//! The controller core: all state and every decision, with no sockets.
//!
//! The socket shell ([`crate::shell`]) feeds it messages (`handle`) and the clock (`tick`);
//! it answers through an [`Outbox`]. Keeping I/O out makes every protocol rule testable with
//! a recording outbox, and keeps the hot path a plain function call.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use oxipp_scheduler::{Scheme, TaskScheduler};
use oxipp_taskdb::TaskStore;
use oxipp_wire::frames::HeaderFields;
use oxipp_wire::replay::DigestHistory;
use oxipp_wire::signing::Verdict;
use oxipp_wire::{msg_types as mt, Frame, Message, Session, Signer, WireError};
use serde_json::{json, Value};

use crate::book::Book;
use crate::broadcast::Broadcasts;
use crate::config::Config;
use crate::dask::DaskHost;
use crate::heartbeat::HeartMonitor;
use crate::outbox::{Outbox, Sock};
use crate::registry::Registry;
use crate::stats::Stats;
use crate::tasks::HeldTask;

/// Ports and addresses engines are told about in `registration_reply`.
#[derive(Debug, Clone)]
pub struct EngineConnInfo(pub Value);

/// Work to do later.
#[derive(Debug, Clone)]
pub enum Timer {
    /// Fail tasks that were running on a dead engine (after a grace period).
    Stranded {
        engine_uuid: String,
        engine_id: u32,
        task_ids: Vec<String>,
        mux_ids: Vec<String>,
    },
}

pub struct Controller {
    pub cfg: Config,
    pub(crate) engine_info: EngineConnInfo,
    pub(crate) hub_session: Session,
    pub(crate) sched_session: Session,
    pub(crate) signer: Signer,
    digests: DigestHistory,
    pub(crate) registry: Registry,
    pub(crate) heart: HeartMonitor,
    pub(crate) book: Book,
    pub(crate) db: Box<dyn TaskStore>,
    /// `None` for the `pure` scheme (plain round-robin relay).
    pub(crate) sched: Option<TaskScheduler>,
    /// Tasks between request and reply, by msg_id (touched four times per task: foldhash,
    /// not the default SipHash).
    pub(crate) held: HashMap<String, HeldTask, foldhash::fast::RandomState>,
    pub(crate) bcast: Broadcasts,
    pub(crate) timers: VecDeque<(Instant, Timer)>,
    pub stats: Stats,
    pub(crate) exit_at: Option<Instant>,
    pub(crate) state_file: Option<PathBuf>,
    /// The engines changed since `state_file` was last written.
    pub(crate) state_dirty: bool,
    pub(crate) state_written: Option<Instant>,
    pub(crate) n_leaves: usize,
    /// The dask.distributed scheduler of `become_dask_request`, if one was asked for.
    pub(crate) dask: DaskHost,
    last_flush: Instant,
}

/// A message that passed parsing and authentication, with its routing header decoded.
pub struct Inbound {
    pub msg: Message,
    pub fields: HeaderFields,
}

impl Controller {
    pub fn new(
        cfg: Config,
        engine_info: EngineConnInfo,
        signer: Signer,
        db: Box<dyn TaskStore>,
        n_leaves: usize,
        state_file: Option<PathBuf>,
        now: Instant,
    ) -> Result<Self, String> {
        let sched = if cfg.scheme == "pure" {
            None
        } else {
            let scheme = Scheme::parse(&cfg.scheme)
                .ok_or_else(|| format!("unknown task scheduler scheme {:?}", cfg.scheme))?;
            Some(
                TaskScheduler::new(scheme, cfg.hwm, rand::random())
                    .with_done_capacity(cfg.remembered_tasks),
            )
        };
        let heart = HeartMonitor::new(
            Duration::from_millis(cfg.hb_period_ms),
            cfg.hb_max_misses,
            now,
        );
        Ok(Controller {
            digests: DigestHistory::new(cfg.digest_history),
            hub_session: Session::with_random_id(signer.clone()),
            sched_session: Session::with_random_id(signer.clone()),
            signer,
            engine_info,
            registry: Registry::new(),
            heart,
            book: Book::default(),
            db,
            sched,
            held: HashMap::default(),
            bcast: Broadcasts::default(),
            timers: VecDeque::new(),
            stats: Stats::default(),
            exit_at: None,
            state_file,
            state_dirty: false,
            state_written: None,
            n_leaves: n_leaves.max(1),
            dask: DaskHost::default(),
            last_flush: now,
            cfg,
        })
    }

    /// Entry point for every message received on any socket.
    pub fn handle(&mut self, sock: Sock, frames: Vec<Frame>, now: Instant, out: &mut dyn Outbox) {
        if sock == Sock::HbPong {
            self.on_pong(frames, now, out);
            return;
        }
        let Some(inb) = self.accept(sock, frames, out) else {
            return;
        };
        match sock {
            Sock::Query => self.on_query(inb, now, out),
            Sock::MuxClient => self.on_mux_request(inb, out),
            Sock::MuxEngine => self.on_mux_reply(inb, out),
            Sock::ControlClient => self.on_control_request(inb, out),
            Sock::ControlEngine => self.on_control_reply(inb, out),
            Sock::TaskClient => self.on_task_request(inb, now, out),
            Sock::TaskEngine => self.on_task_reply(inb, now, out),
            Sock::IopubIn => self.on_iopub(inb, now, out),
            Sock::BcastClient => self.on_bcast_request(inb, out),
            Sock::BcastLeaf(_) => self.on_bcast_reply(inb, out),
            Sock::IopubOut | Sock::Notification | Sock::HbPing | Sock::HbPong => {}
        }
    }

    /// Parses and authenticates; refuses garbage, forgeries and replays with a log line, a
    /// counter and (on the query channel, where the protocol has one) a `hub_error` reply.
    fn accept(&mut self, sock: Sock, frames: Vec<Frame>, out: &mut dyn Outbox) -> Option<Inbound> {
        // Only a malformed message needs its first frame kept aside (for the error reply on
        // the query channel); cloning it for every message would cost an allocation.
        let well_formed = frames
            .iter()
            .position(|f| f.as_ref() == oxipp_wire::frames::DELIMITER)
            .is_some_and(|p| frames.len() - p > 5);
        let idents_guess: Vec<Frame> = if well_formed {
            Vec::new()
        } else {
            frames.first().cloned().into_iter().collect()
        };
        let msg = match Message::parse(frames) {
            Ok(m) => m,
            Err(e) => return self.refuse(sock, "malformed", &e, idents_guess, None, out),
        };
        if sock == Sock::Query && msg.byte_len() > self.cfg.max_query_bytes {
            let e = WireError::TooLarge {
                size: msg.byte_len(),
                limit: self.cfg.max_query_bytes,
            };
            return self.refuse(sock, "oversized", &e, msg.idents.clone(), None, out);
        }
        // One HMAC pass both authenticates and yields the digest for replay detection.
        let (verdict, digest) = self.signer.check(&msg.signature, msg.signed_parts());
        match verdict {
            Verdict::Valid => {}
            Verdict::Unsigned => {
                return self.refuse(
                    sock,
                    "unsigned",
                    &WireError::Unsigned,
                    msg.idents.clone(),
                    None,
                    out,
                )
            }
            Verdict::Invalid => {
                return self.refuse(
                    sock,
                    "bad_signature",
                    &WireError::BadSignature,
                    msg.idents.clone(),
                    None,
                    out,
                )
            }
        }
        if let Some(d) = digest {
            if !self.digests.insert(d) {
                return self.refuse(
                    sock,
                    "replayed",
                    &WireError::Replayed,
                    msg.idents.clone(),
                    None,
                    out,
                );
            }
        }
        let fields = match msg.header_fields() {
            Ok(f) => f,
            Err(e) => return self.refuse(sock, "bad_header", &e, msg.idents.clone(), None, out),
        };
        Some(Inbound { msg, fields })
    }

    fn refuse(
        &mut self,
        sock: Sock,
        what: &'static str,
        err: &WireError,
        idents: Vec<Frame>,
        parent: Option<&Frame>,
        out: &mut dyn Outbox,
    ) -> Option<Inbound> {
        let n = self.stats.bump(what);
        if n <= 10 || n.is_power_of_two() {
            tracing::warn!("dropped {what} message on {sock:?} ({n} so far): {err}");
        }
        if sock == Sock::Query
            && !idents.is_empty()
            && idents[0].as_ref() != oxipp_wire::frames::DELIMITER
        {
            let content =
                oxipp_wire::errors::error_content("ValueError", &format!("invalid message: {err}"));
            let m =
                self.hub_session
                    .build(idents, mt::HUB_ERROR, parent, &json!({}), &content, vec![]);
            out.send(Sock::Query, m.into_frames());
        }
        None
    }

    /// Drives timers: heartbeats, registration stalls, task timeouts, stranded work, DB flush.
    pub fn tick(&mut self, now: Instant, out: &mut dyn Outbox) {
        self.heartbeat_tick(now, out);
        for (uuid, id) in self.registry.expire(now) {
            tracing::warn!(
                "engine {id} ({uuid}) registered but sent no heartbeat within {:.1} s; dropping the registration",
                self.cfg.registration_timeout_s()
            );
            self.stats.bump("registration_stalled");
        }
        if let Some(s) = self.sched.as_mut() {
            let actions = s.poll_timeouts(now);
            if !actions.is_empty() {
                self.apply_sched_actions(actions, None, out);
            }
        }
        while let Some((at, _)) = self.timers.front() {
            if *at > now {
                break;
            }
            let Some((_, t)) = self.timers.pop_front() else {
                break;
            };
            self.fire_timer(t, now, out);
        }
        self.dask_tick(now, out);
        if now.duration_since(self.last_flush) >= Duration::from_secs(2) {
            self.last_flush = now;
            if let Err(e) = self.db.flush() {
                tracing::error!("task database flush failed: {e}");
            }
        }
    }

    /// When `tick` next has something to do.
    pub fn next_deadline(&self) -> Instant {
        let mut d = self.heart.next_deadline();
        if let Some(r) = self.registry.next_deadline() {
            d = d.min(r);
        }
        if let Some(s) = self.sched.as_ref().and_then(|s| s.next_deadline()) {
            d = d.min(s);
        }
        if let Some((t, _)) = self.timers.front() {
            d = d.min(*t);
        }
        if let Some(t) = self.exit_at {
            d = d.min(t);
        }
        if let Some(t) = self.dask.next_deadline() {
            d = d.min(t);
        }
        if let Some(t) = self.state_due() {
            d = d.min(t);
        }
        d
    }

    /// The dask.distributed scheduler's process id, while one is starting or running.
    pub fn dask_scheduler_pid(&self) -> Option<u32> {
        self.dask.pid()
    }

    /// Set once the Hub was asked to shut down; the shell exits at that time.
    pub fn exit_at(&self) -> Option<Instant> {
        self.exit_at
    }

    pub(crate) fn schedule(&mut self, at: Instant, t: Timer) {
        // Timers are pushed with non-decreasing deadlines (fixed grace periods), so a deque
        // kept in order by insertion is enough.
        let pos = self
            .timers
            .iter()
            .position(|(d, _)| *d > at)
            .unwrap_or(self.timers.len());
        self.timers.insert(pos, (at, t));
    }

    fn fire_timer(&mut self, t: Timer, now: Instant, out: &mut dyn Outbox) {
        match t {
            Timer::Stranded {
                engine_uuid,
                engine_id,
                task_ids,
                mux_ids,
            } => self.fail_stranded(&engine_uuid, engine_id, task_ids, mux_ids, now, out),
        }
    }

    /// Publishes on the notification channel.
    pub(crate) fn notify(
        &mut self,
        msg_type: &str,
        content: Value,
        parent: Option<&Frame>,
        out: &mut dyn Outbox,
    ) {
        let m = self
            .hub_session
            .build(vec![], msg_type, parent, &json!({}), &content, vec![]);
        out.send(Sock::Notification, m.into_frames());
    }

    /// A reply on the query channel.
    pub(crate) fn reply_query(
        &mut self,
        ident: &[Frame],
        msg_type: &str,
        parent: Option<&Frame>,
        content: Value,
        buffers: Vec<Frame>,
        out: &mut dyn Outbox,
    ) {
        let m = self.hub_session.build(
            ident.to_vec(),
            msg_type,
            parent,
            &json!({}),
            &content,
            buffers,
        );
        out.send(Sock::Query, m.into_frames());
    }
}

/// `Bytes` of a string.
pub(crate) fn frame(s: &str) -> Frame {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Lossy UTF-8 of an identity frame (engine uuids are ASCII).
pub(crate) fn ident_str(f: &[u8]) -> String {
    String::from_utf8_lossy(f).into_owned()
}

impl Controller {
    /// `--restore`: engines from the state file count as registered, without notifications.
    pub fn restore_engines(&mut self, state: &crate::registry::StateFile, now: Instant) -> usize {
        let engines = self.registry.restore(state);
        let n = engines.len();
        for e in engines {
            self.heart.add(&e.uuid);
            self.book.engine(e.id);
            if let Some(s) = self.sched.as_mut() {
                // nothing can be queued yet, so there are no actions to carry out
                let _ = s.add_engine(&e.uuid, now);
            }
        }
        n
    }

    pub fn flush_db(&mut self) -> Result<(), oxipp_taskdb::DbError> {
        self.db.flush()
    }
}
