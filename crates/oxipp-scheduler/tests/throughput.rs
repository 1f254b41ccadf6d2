//! Throughput benchmark (not an assertion): 1,000,000 dependency-free tasks through 100
//! engines. Run with
//! `cargo test -p oxipp-scheduler --release --test throughput -- --ignored --nocapture`.

use std::collections::VecDeque;
use std::time::Instant;

use oxipp_scheduler::{Action, Outcome, Scheme, TaskRequest, TaskScheduler};

const TASKS: usize = 1_000_000;

/// Wall and CPU time of the calling thread.
#[derive(Clone, Copy)]
struct Clock {
    wall: Instant,
    cpu: f64,
}

/// CPU time of this thread from /proc (clock ticks of 10 ms; runs last seconds). The
/// workspace denies `unsafe`, which rules out calling `clock_gettime` directly.
fn thread_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // fields 14 and 15 (utime, stime) after the ")" that ends the command name
    let rest = stat.rsplit_once(')').map_or("", |x| x.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

impl Clock {
    fn start() -> Clock {
        Clock {
            wall: Instant::now(),
            cpu: thread_cpu_secs(),
        }
    }

    /// (tasks per wall second, tasks per CPU second)
    fn rates(self, n: usize) -> (f64, f64) {
        let wall = self.wall.elapsed().as_secs_f64();
        let cpu = (thread_cpu_secs() - self.cpu).max(0.01);
        (n as f64 / wall, n as f64 / cpu)
    }
}
const ENGINES: usize = 100;

/// msg_ids shaped like jupyter_client's (`<session uuid>_<pid>_<counter>`).
fn ids() -> Vec<String> {
    (0..TASKS)
        .map(|i| format!("5f1c2a7e-93b4-4c1d-8e2f-0a6b7c8d9e0f_4242_{i}"))
        .collect()
}

/// OXIPP_BENCH_DONE_CAP overrides the finished-id memory bound (default 1,000,000).
fn done_cap() -> usize {
    std::env::var("OXIPP_BENCH_DONE_CAP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(oxipp_scheduler::DEFAULT_DONE_CAPACITY)
}

/// Resident set size of this process in MiB (from /proc).
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn collect_runs(actions: Vec<Action>, running: &mut VecDeque<(String, String)>) {
    for a in actions {
        if let Action::Run { msg_id, engine } = a {
            running.push_back((msg_id, engine));
        }
    }
}

/// Submit everything up front (deep queue), then answer replies one by one.
fn burst(scheme: Scheme, hwm: u32) -> (f64, f64) {
    let ids = ids();
    let now = Instant::now();
    let mut s = TaskScheduler::new(scheme, hwm, 1).with_done_capacity(done_cap());
    for e in 0..ENGINES {
        s.add_engine(&format!("engine-{e:04}-0000-0000-000000000000"), now);
    }
    let mut running = VecDeque::new();
    let clock = Clock::start();
    for id in ids {
        collect_runs(s.submit(TaskRequest::new(id), now), &mut running);
    }
    let mut relayed = 0;
    while let Some((id, engine)) = running.pop_front() {
        let actions = s.on_reply(&engine, &id, Outcome::OK, now);
        relayed += actions
            .iter()
            .filter(|a| matches!(a, Action::Relay { .. }))
            .count();
        collect_runs(actions, &mut running);
    }
    let rates = clock.rates(TASKS);
    assert_eq!(relayed, TASKS);
    assert_eq!(s.in_flight(), 0);
    rates
}

/// Keep about 2 tasks per engine in flight: submit one, answer the oldest.
fn steady(scheme: Scheme, hwm: u32) -> (f64, f64) {
    let ids = ids();
    let now = Instant::now();
    let mut s = TaskScheduler::new(scheme, hwm, 1).with_done_capacity(done_cap());
    for e in 0..ENGINES {
        s.add_engine(&format!("engine-{e:04}-0000-0000-000000000000"), now);
    }
    let mut running = VecDeque::new();
    let clock = Clock::start();
    for (i, id) in ids.into_iter().enumerate() {
        collect_runs(s.submit(TaskRequest::new(id), now), &mut running);
        if i >= 2 * ENGINES {
            if let Some((id, engine)) = running.pop_front() {
                collect_runs(s.on_reply(&engine, &id, Outcome::OK, now), &mut running);
            }
        }
    }
    while let Some((id, engine)) = running.pop_front() {
        collect_runs(s.on_reply(&engine, &id, Outcome::OK, now), &mut running);
    }
    let rates = clock.rates(TASKS);
    assert_eq!(s.in_flight(), 0);
    let (remembered, forgotten) = s.done_memory();
    println!(
        "  steady {:<11}: {remembered} finished ids remembered ({forgotten} forgotten), process RSS {:.0} MiB",
        scheme.name(),
        rss_mib()
    );
    drop(s);
    println!("  after dropping the scheduler: RSS {:.0} MiB", rss_mib());
    rates
}

#[test]
#[ignore = "benchmark; run explicitly with --release --ignored --nocapture"]
fn million_tasks_through_100_engines() {
    for (scheme, hwm) in [
        (Scheme::LeastLoad, 1),
        (Scheme::LeastLoad, 0),
        (Scheme::Lru, 1),
        (Scheme::PlainRandom, 1),
        (Scheme::TwoBin, 1),
        (Scheme::Weighted, 1),
    ] {
        // OXIPP_BENCH=leastload:1 runs one configuration (for profiling)
        if let Ok(only) = std::env::var("OXIPP_BENCH") {
            if only != format!("{}:{hwm}", scheme.name()) {
                continue;
            }
        }
        let b = burst(scheme, hwm);
        let st = steady(scheme, hwm);
        println!(
            "{:<12} hwm={hwm}: burst (1M queued up front) {:>9.0} tasks/s wall, {:>9.0} per CPU-s | \
             steady (~200 in flight) {:>9.0} tasks/s wall, {:>9.0} per CPU-s",
            scheme.name(),
            b.0,
            b.1,
            st.0,
            st.1
        );
    }
}
