//! `lb-throughput` / `mux-throughput`: no-op tasks per second through the controller.
//!
//! One client keeps a window of requests in flight (like a client that submits a large `map`
//! without waiting), so the rate is bounded by the controller's relay/scheduling cost rather
//! than by round-trip latency. Engines answer instantly, so they are not the bottleneck either.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use oxipp_wire::msg_types::APPLY_REQUEST;
use oxipp_wire::Frame;
use serde::Serialize;
use serde_json::{json, Value};

use super::bring_up_all;
use crate::client::{apply_buffers, lb_metadata, SimClient};
use crate::fleet::FleetOptions;
use crate::procfs;
use crate::sock::{send, take, wait};
use crate::stats::{summarize, Summary};

/// A reply that takes longer than this, with requests in flight, means the controller lost or
/// wedged them; the run fails instead of hanging.
const STALL: Duration = Duration::from_secs(30);
/// Error messages kept verbatim.
const MAX_ERRORS_KEPT: usize = 5;
/// Reply coalescing: when a wake-up found fewer replies than this while the window is still
/// mostly full, pause briefly so the next wake-up finds a batch. On two shared cores every
/// wake-up (poll, context switch) costs about as much as the controller's work on a task;
/// batching leaves that CPU to the controller. The window keeps the pipeline full meanwhile.
const COALESCE_BELOW: usize = 32;
const COALESCE_PAUSE: Duration = Duration::from_micros(200);

/// Where requests go.
#[derive(Debug, Clone)]
pub enum Route {
    /// The load-balanced `task` port; no routing prefix.
    Task,
    /// The `mux` port, round-robin over these engine uuids (prefix frame = target uuid).
    Mux(Vec<String>),
}

impl Route {
    fn port(&self, client: &SimClient) -> u16 {
        match self {
            Route::Task => client.conn.client.task,
            Route::Mux(_) => client.conn.client.mux,
        }
    }

    fn prefix(&self, n: u64) -> Vec<Frame> {
        match self {
            Route::Task => vec![],
            Route::Mux(uuids) => vec![Bytes::from(
                uuids[(n % uuids.len() as u64) as usize].clone(),
            )],
        }
    }

    fn metadata(&self) -> Frame {
        match self {
            Route::Task => lb_metadata(),
            // A DirectView (9.1+) sends only the label.
            Route::Mux(_) => Bytes::from_static(br#"{"label": null}"#),
        }
    }
}

/// Results of one pumping run.
#[derive(Debug, Clone, Serialize)]
pub struct PumpResult {
    pub tasks: u64,
    pub ok: u64,
    pub failed: u64,
    pub elapsed_s: f64,
    pub tasks_per_s: f64,
    /// Submit-to-reply time in ms (includes queueing behind the window).
    pub latency_ms: Summary,
    pub errors: Vec<String>,
}

/// Sends `total` no-op `apply_request`s with at most `window` in flight, verifying every
/// reply. `on_progress(done)` is called after each reply (cheap: the caller filters).
pub fn pump(
    client: &SimClient,
    route: &Route,
    total: u64,
    window: usize,
    mut on_progress: impl FnMut(u64),
) -> Result<PumpResult> {
    let mut sock = client.dealer(route.port(client))?;
    let metadata = route.metadata();
    let content = Bytes::from_static(b"{}");
    let buffers = apply_buffers();
    let window = window.max(1);
    let mut pending: HashMap<String, Instant> = HashMap::with_capacity(window * 2);
    let mut latencies = Vec::with_capacity(total.min(10_000_000) as usize);
    let (mut sent, mut done, mut ok) = (0u64, 0u64, 0u64);
    let mut errors = Vec::new();
    let start = Instant::now();
    let mut last_reply = Instant::now();
    while done < total {
        while sent < total && pending.len() < window {
            let (id, m) = client.request(
                route.prefix(sent),
                APPLY_REQUEST,
                &metadata,
                &content,
                &buffers,
            );
            send(&mut sock, m.into_frames())?;
            pending.insert(id, Instant::now());
            sent += 1;
        }
        // one write for everything queued since the last pass
        sock.flush();
        wait(&mut sock, Duration::from_millis(100))?;
        let before = done;
        sock.handle_io();
        while let Some(frames) = take(&mut sock) {
            let r = client.parse_reply(frames)?;
            let Some(t) = pending.remove(&r.parent_msg_id) else {
                bail!(
                    "reply to a request we did not send (or answered twice): {}",
                    r.parent_msg_id
                );
            };
            latencies.push(t.elapsed().as_secs_f64() * 1e3);
            done += 1;
            if r.ok {
                ok += 1;
            } else if errors.len() < MAX_ERRORS_KEPT {
                errors.push(r.error.unwrap_or_default());
            }
            on_progress(done);
        }
        if done == before {
            if last_reply.elapsed() > STALL {
                bail!(
                    "stalled: no reply for {} s with {} requests in flight ({done}/{total} done)",
                    STALL.as_secs(),
                    pending.len()
                );
            }
            continue;
        }
        last_reply = Instant::now();
        if ((done - before) as usize) < COALESCE_BELOW && pending.len() * 2 >= window {
            std::thread::sleep(COALESCE_PAUSE);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(PumpResult {
        tasks: done,
        ok,
        failed: done - ok,
        elapsed_s: elapsed,
        tasks_per_s: done as f64 / elapsed,
        latency_ms: summarize(&latencies),
        errors,
    })
}

/// Parameters shared by the throughput-style scenarios.
#[derive(Debug, Clone)]
pub struct Load {
    pub tasks: u64,
    pub window: usize,
    /// Tasks sent (and not counted) before measuring, so connection set-up and first-message
    /// costs do not dilute the rate.
    pub warmup: u64,
}

pub fn run(
    client: &SimClient,
    opts: &FleetOptions,
    timeout: Duration,
    load: &Load,
    mux: bool,
    pid: Option<u32>,
) -> Result<Value> {
    let mut up = bring_up_all(client, opts, timeout)?;
    let route = if mux {
        Route::Mux(up.engines.iter().map(|e| e.uuid.clone()).collect())
    } else {
        Route::Task
    };
    if load.warmup > 0 {
        pump(client, &route, load.warmup, load.window, |_| {})?;
    }
    let (cpu0, ctl0) = (procfs::self_cpu_seconds(), pid.and_then(procfs::usage));
    let result = pump(client, &route, load.tasks, load.window, |_| {})?;
    let (cpu1, ctl1) = (procfs::self_cpu_seconds(), pid.and_then(procfs::usage));
    let ok = result.failed == 0;
    // Stop first, so that the counters include the last replies.
    up.fleet.stop();
    Ok(json!({
        "ok": ok,
        "error": (!ok).then(|| format!("{} of {} tasks failed", result.failed, result.tasks)),
        "route": if mux { "mux" } else { "task" },
        "engines": opts.engines,
        "window": load.window,
        "warmup_tasks": load.warmup,
        "result": result,
        "tasks_per_s": result.tasks_per_s,
        "registration": up.report.to_json(),
        "fleet": up.fleet.stats.to_json(),
        "cpu_s": cpu_json(cpu1 - cpu0, ctl0, ctl1),
    }))
}

/// CPU used during the measured part, by this process and by the controller tree: when the
/// simulator uses most of a core, a high rate may be limited by it and not by the controller.
pub fn cpu_json(sim: f64, before: Option<procfs::Usage>, after: Option<procfs::Usage>) -> Value {
    let controller = match (before, after) {
        (Some(a), Some(b)) => Some(b.tree_cpu_s - a.tree_cpu_s),
        _ => None,
    };
    json!({ "simulator": sim, "controller": controller })
}
