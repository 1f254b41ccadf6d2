//! `rss`: controller memory while it works through many load-balanced tasks.
//!
//! Stock keeps per-task state (DictDB records, the scheduler's `all_ids`/`all_done` sets, the
//! Hub's `completed` sets) so memory grows with the number of tasks ever run; oxipp promises
//! memory bounded by configuration. Sampling every `every` tasks shows the slope, which is what
//! matters: a flat series is the goal, the absolute level is secondary.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::bring_up_all;
use super::throughput::{cpu_json, pump, Load, Route};
use crate::client::SimClient;
use crate::fleet::FleetOptions;
use crate::procfs;

pub fn run(
    client: &SimClient,
    opts: &FleetOptions,
    timeout: Duration,
    load: &Load,
    every: u64,
    pid: u32,
) -> Result<Value> {
    let Some(initial) = procfs::usage(pid) else {
        bail!("no process {pid} to sample (is --pid the controller's pid?)");
    };
    let mut up = bring_up_all(client, opts, timeout)?;
    let registered = procfs::usage(pid);
    if load.warmup > 0 {
        pump(client, &Route::Task, load.warmup, load.window, |_| {})?;
    }
    let every = every.max(1);
    let start = Instant::now();
    let mut series = vec![sample(0, pid, start)];
    let cpu0 = procfs::self_cpu_seconds();
    let result = pump(client, &Route::Task, load.tasks, load.window, |done| {
        if done % every == 0 {
            series.push(sample(done, pid, start));
        }
    })?;
    let cpu_sim = procfs::self_cpu_seconds() - cpu0;
    let first = series
        .first()
        .and_then(|s| s["rss_kib"].as_u64())
        .unwrap_or(0);
    let last = series
        .last()
        .and_then(|s| s["rss_kib"].as_u64())
        .unwrap_or(0);
    let first_tree = series
        .first()
        .and_then(|s| s["tree_rss_kib"].as_u64())
        .unwrap_or(0);
    let last_tree = series
        .last()
        .and_then(|s| s["tree_rss_kib"].as_u64())
        .unwrap_or(0);
    let ok = result.failed == 0;
    // Stop first, so that the counters include the last replies.
    up.fleet.stop();
    Ok(json!({
        "ok": ok,
        "error": (!ok).then(|| format!("{} of {} tasks failed", result.failed, result.tasks)),
        "engines": opts.engines,
        "tasks": result.tasks,
        "sample_every": every,
        "rss_before_engines": initial,
        "rss_after_registration": registered,
        "series": series,
        "final_rss_mib": last as f64 / 1024.0,
        "final_tree_rss_mib": last_tree as f64 / 1024.0,
        "growth_mib": (last as f64 - first as f64) / 1024.0,
        "tree_growth_mib": (last_tree as f64 - first_tree as f64) / 1024.0,
        "tree_growth_bytes_per_task": (last_tree as f64 - first_tree as f64) * 1024.0 / result.tasks.max(1) as f64,
        "tasks_per_s": result.tasks_per_s,
        "result": result,
        "cpu_s": cpu_json(cpu_sim, None, None),
        "fleet": up.fleet.stats.to_json(),
    }))
}

fn sample(done: u64, pid: u32, start: Instant) -> Value {
    let u = procfs::usage(pid).unwrap_or_default();
    json!({
        "tasks": done,
        "t_s": start.elapsed().as_secs_f64(),
        "rss_kib": u.rss_kib,
        "tree_rss_kib": u.tree_rss_kib,
        "processes": u.processes,
    })
}
