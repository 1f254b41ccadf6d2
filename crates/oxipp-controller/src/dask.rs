//! `become_dask_request` / `stop_distributed_request`: the Hub hosts one dask.distributed
//! scheduler for `Client.become_dask()` (spec §3.2).
//!
//! The scheduler runs as a child process ([`crate::dask_process`]). Starting it takes a second
//! or more, so a request that has to start it is parked: [`Controller::dask_tick`] polls for the
//! child's report from the controller's `tick` and then answers every parked request at once.
//! Requests that arrive while it starts join the queue, so there is still only one scheduler.

use std::mem;
use std::time::{Duration, Instant};

use oxipp_wire::{msg_types as mt, Frame};
use serde_json::{json, Map, Value};

use crate::core::Controller;
use crate::dask_process::{self, Report, SchedulerAddr, SchedulerProcess, StartError};
use crate::outbox::Outbox;

/// How often a starting scheduler's report is looked for.
const POLL: Duration = Duration::from_millis(20);

/// A query waiting for the scheduler to come up.
struct Waiter {
    idents: Vec<Frame>,
    parent: Frame,
}

#[derive(Default)]
enum State {
    #[default]
    Idle,
    Starting {
        proc: SchedulerProcess,
        report: std::sync::mpsc::Receiver<Report>,
        give_up: Instant,
        next_poll: Instant,
        waiters: Vec<Waiter>,
        /// A stop request came in meanwhile: kill it as soon as it reports.
        stop: bool,
    },
    Running {
        proc: SchedulerProcess,
        addr: SchedulerAddr,
    },
}

/// The Hub's dask scheduler, if any. Dropping it kills the scheduler process.
#[derive(Default)]
pub struct DaskHost {
    state: State,
}

impl DaskHost {
    /// When the controller's tick must next run to look for a starting scheduler's report.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Starting {
                next_poll, give_up, ..
            } => Some((*next_poll).min(*give_up)),
            _ => None,
        }
    }

    /// The scheduler's process id while one is starting or running (tests, logs).
    pub fn pid(&self) -> Option<u32> {
        match &self.state {
            State::Starting { proc, .. } | State::Running { proc, .. } => Some(proc.id()),
            State::Idle => None,
        }
    }
}

fn ok_content(a: &SchedulerAddr) -> Value {
    json!({"status": "ok", "ip": a.ip, "address": a.address, "port": a.port})
}

/// Loopback unless the controller listens for engines on every interface (engines may then
/// be remote, so the scheduler must be reachable the same way: dask's default, all interfaces).
fn default_host(engine_ip: &str) -> Option<&str> {
    match engine_ip {
        "" | "*" | "0.0.0.0" | "::" => None,
        ip => Some(ip),
    }
}

impl Controller {
    pub(crate) fn on_become_dask(
        &mut self,
        idents: Vec<Frame>,
        parent: Frame,
        content: &Map<String, Value>,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let waiter = Waiter { idents, parent };
        if let State::Running { proc, .. } = &mut self.dask.state {
            if proc.has_exited() {
                tracing::warn!("the dask.distributed scheduler had exited; starting a new one");
                self.dask.state = State::Idle;
            }
        }
        match &mut self.dask.state {
            State::Running { addr, .. } => {
                let c = ok_content(addr);
                self.answer(&waiter, mt::BECOME_DASK_REPLY, c, out);
            }
            State::Starting { waiters, .. } => waiters.push(waiter),
            State::Idle => {
                let args = match content.get("scheduler_args") {
                    None | Some(Value::Null) => Map::new(),
                    Some(Value::Object(m)) => m.clone(),
                    Some(other) => {
                        let e = StartError::new(
                            "TypeError",
                            format!("scheduler_args must be a dict, not {other}"),
                        );
                        return self.answer(&waiter, mt::HUB_ERROR, e.content(), out);
                    }
                };
                let kwargs =
                    dask_process::scheduler_kwargs(&args, default_host(&self.cfg.engine_ip));
                let python = dask_process::python(self.cfg.dask_python.as_deref());
                tracing::info!("becoming dask.distributed scheduler ({python}): {kwargs:?}");
                match SchedulerProcess::spawn(&python, &kwargs) {
                    Ok((proc, report)) => {
                        self.dask.state = State::Starting {
                            proc,
                            report,
                            give_up: now + Duration::from_millis(self.cfg.dask_start_timeout_ms),
                            next_poll: now + POLL,
                            waiters: vec![waiter],
                            stop: false,
                        };
                    }
                    Err(e) => {
                        tracing::error!("dask.distributed scheduler: {}: {}", e.ename, e.evalue);
                        self.answer(&waiter, mt::HUB_ERROR, e.content(), out);
                    }
                }
            }
        }
    }

    pub(crate) fn on_stop_distributed(
        &mut self,
        idents: Vec<Frame>,
        parent: Frame,
        out: &mut dyn Outbox,
    ) {
        match &mut self.dask.state {
            State::Idle => tracing::info!("no dask.distributed scheduler running"),
            State::Starting { stop, .. } => {
                tracing::info!("stopping the dask.distributed scheduler once it has started");
                *stop = true;
            }
            State::Running { .. } => {
                tracing::info!("stopping the dask.distributed scheduler");
                // dropping the process kills it
                self.dask.state = State::Idle;
            }
        }
        let w = Waiter { idents, parent };
        self.answer(&w, mt::STOP_DISTRIBUTED_REPLY, json!({"status": "ok"}), out);
    }

    /// Answers parked `become_dask_request`s once the starting scheduler reports (or fails
    /// to, in time). Cheap when nothing is starting.
    pub(crate) fn dask_tick(&mut self, now: Instant, out: &mut dyn Outbox) {
        let State::Starting {
            report,
            give_up,
            next_poll,
            ..
        } = &mut self.dask.state
        else {
            return;
        };
        let outcome = match report.try_recv() {
            Ok(r) => r,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                Report::Vanished("(the thread reading its output ended)".into())
            }
            Err(std::sync::mpsc::TryRecvError::Empty) if now >= *give_up => {
                Report::Failed(StartError::new(
                    "TimeoutError",
                    format!(
                        "the dask.distributed scheduler did not start within {:.1} s",
                        self.cfg.dask_start_timeout_ms as f64 / 1000.0
                    ),
                ))
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                *next_poll = now + POLL;
                return;
            }
        };
        let State::Starting {
            mut proc,
            waiters,
            stop,
            ..
        } = mem::take(&mut self.dask.state)
        else {
            return;
        };
        let (reply_type, content) = match outcome {
            Report::Listening(addr) if stop => {
                tracing::info!("dask.distributed scheduler stopped as requested while starting");
                drop(proc);
                let e = StartError::new(
                    "RuntimeError",
                    format!(
                        "the dask.distributed scheduler at {} was stopped by a \
                         stop_distributed_request while it started",
                        addr.address
                    ),
                );
                (mt::HUB_ERROR, e.content())
            }
            Report::Listening(addr) => {
                tracing::info!("dask.distributed scheduler running at {}", addr.address);
                let c = ok_content(&addr);
                self.dask.state = State::Running { proc, addr };
                (mt::BECOME_DASK_REPLY, c)
            }
            Report::Failed(e) => {
                drop(proc);
                tracing::error!("dask.distributed scheduler: {}: {}", e.ename, e.evalue);
                (mt::HUB_ERROR, e.content())
            }
            Report::Vanished(stderr) => {
                let status = proc.kill();
                let mut evalue = format!(
                    "the dask.distributed scheduler process exited ({status}) before \
                     reporting its address"
                );
                if !stderr.trim().is_empty() {
                    evalue.push_str("; its stderr ended with:\n");
                    evalue.push_str(&stderr);
                }
                tracing::error!("{evalue}");
                (
                    mt::HUB_ERROR,
                    StartError::new("RuntimeError", evalue).content(),
                )
            }
        };
        for w in &waiters {
            self.answer(w, reply_type, content.clone(), out);
        }
    }

    fn answer(&mut self, w: &Waiter, msg_type: &str, content: Value, out: &mut dyn Outbox) {
        self.reply_query(&w.idents, msg_type, Some(&w.parent), content, vec![], out);
    }
}
