//! `oxipp-sim`: simulated engines and clients that load an ipyparallel controller.
//!
//! Real stock engines cost ~100 MB and a second of start-up each, so a controller cannot be
//! measured at 5,000 engines or 100,000 tasks/s with them on one small machine. These
//! simulated peers speak the stock protocol over real ZeroMQ connections (ZMTP, spoken by
//! `oxipp_zmtp`; any controller that works with stock engines works with them) but do no work,
//! so what is measured is the controller.
//! Every subcommand prints exactly one JSON object on stdout; diagnostics go to stderr.

/// The same allocator as the controller: the simulator allocates per message too, and on two
/// shared cores its CPU is taken from the controller under test.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod client;
mod conn;
mod engine;
mod fleet;
mod limits;
mod procfs;
mod sock;
mod stats;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use crate::client::SimClient;
use crate::conn::Conn;
use crate::fleet::{default_processes, default_threads, serve_child, FleetOptions};
use crate::workloads::throughput::Load;

#[derive(Parser)]
#[command(
    name = "oxipp-sim",
    version,
    about = "Simulated ipyparallel engines and clients for benchmarking a controller"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args)]
struct Common {
    /// Profile directory whose security/ holds the controller's connection files.
    #[arg(long, global = true, env = "IPP_PROFILE_DIR")]
    profile_dir: Option<PathBuf>,
    /// Cluster id (selects ipcontroller-<id>-{client,engine}.json).
    #[arg(long, global = true, env = "IPP_CLUSTER_ID", default_value = "")]
    cluster_id: String,
    /// Seconds to wait for the connection files to appear.
    #[arg(long, global = true, default_value_t = 30.0)]
    wait_files: f64,
    /// Seconds to wait for all engines to register.
    #[arg(long, global = true, default_value_t = 120.0)]
    timeout: f64,
    /// Engine worker threads (default: one per 1,000 engines, 1 to 4).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Ignored; accepted so that older scripts still run. It split engines over libzmq
    /// contexts (1,023 sockets each); the simulator no longer uses libzmq.
    #[arg(long, global = true)]
    engines_per_context: Option<usize>,
    /// Skip checking request signatures in the engines (replies are always verified).
    #[arg(long, global = true)]
    no_verify: bool,
    /// Registered engines connect only their heart, no shell (see `FleetOptions::heart_only`);
    /// for registering more engines than the controller has descriptors for full ones.
    #[arg(long, global = true)]
    heart_only: bool,
    /// The controller's pid, to report its memory and CPU (the whole process tree).
    #[arg(long, global = true)]
    pid: Option<u32>,
    /// Processes to spread the engines over (default: as many as the descriptor limit needs).
    #[arg(long, global = true)]
    processes: Option<usize>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Register N engines at once; time until the Hub has announced them all.
    Engines {
        #[arg(short = 'n', long, default_value_t = 100)]
        engines: usize,
        /// Keep the engines alive (heartbeating, answering) this many seconds afterwards.
        #[arg(long, default_value_t = 0.0)]
        hold: f64,
    },
    /// Load-balanced no-op tasks per second through the `task` port.
    LbThroughput(LoadArgs),
    /// Direct no-op tasks per second through the `mux` port, round-robin over the engines.
    MuxThroughput(LoadArgs),
    /// One execute_request to every engine through mux, repeated; median round time.
    ExecuteAll {
        #[arg(short = 'n', long, default_value_t = 100)]
        engines: usize,
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
    /// Controller VmRSS every `--every` tasks while running `--tasks` load-balanced tasks.
    Rss {
        #[command(flatten)]
        load: LoadArgs,
        #[arg(long, default_value_t = 100_000)]
        every: u64,
    },
    /// Internal: a helper process carrying part of a fleet (see fleet/remote.rs).
    #[command(hide = true)]
    FleetWorker {
        #[arg(long)]
        count: usize,
    },
}

#[derive(Args, Clone)]
struct LoadArgs {
    #[arg(long, default_value_t = 100_000)]
    tasks: u64,
    #[arg(short = 'n', long, default_value_t = 16)]
    engines: usize,
    /// Requests kept in flight by the client.
    #[arg(long, default_value_t = 1000)]
    window: usize,
    /// Uncounted tasks sent first (default: min(2,000, tasks/10)).
    #[arg(long)]
    warmup: Option<u64>,
}

impl LoadArgs {
    fn load(&self) -> Load {
        Load {
            tasks: self.tasks,
            window: self.window,
            warmup: self.warmup.unwrap_or((self.tasks / 10).min(2000)),
        }
    }
}

impl Cmd {
    fn name(&self) -> &'static str {
        match self {
            Cmd::Engines { .. } => "engines",
            Cmd::LbThroughput(_) => "lb-throughput",
            Cmd::MuxThroughput(_) => "mux-throughput",
            Cmd::ExecuteAll { .. } => "execute-all",
            Cmd::Rss { .. } => "rss",
            Cmd::FleetWorker { .. } => "fleet-worker",
        }
    }

    fn engines(&self) -> usize {
        match self {
            Cmd::Engines { engines, .. } | Cmd::ExecuteAll { engines, .. } => *engines,
            Cmd::FleetWorker { count } => *count,
            Cmd::LbThroughput(l) | Cmd::MuxThroughput(l) | Cmd::Rss { load: l, .. } => l.engines,
        }
    }
}

fn run(cli: &Cli, nofile: u64) -> Result<Value> {
    let c = &cli.common;
    let Some(profile_dir) = &c.profile_dir else {
        anyhow::bail!("--profile-dir (or $IPP_PROFILE_DIR) is required");
    };
    let conn = Conn::load(
        profile_dir,
        &c.cluster_id,
        Duration::from_secs_f64(c.wait_files),
    )?;
    let client = SimClient::new(&conn);
    let engines = cli.cmd.engines();
    let processes = c
        .processes
        .unwrap_or_else(|| default_processes(engines, c.heart_only, nofile));
    if let Some(w) = limits::warning(engines.div_ceil(processes.max(1)), c.heart_only, nofile) {
        eprintln!("oxipp-sim: warning: {w}");
    }
    let opts = FleetOptions {
        engines,
        threads: c
            .threads
            .unwrap_or_else(|| default_threads(engines.div_ceil(processes))),
        verify: !c.no_verify,
        heart_only: c.heart_only,
        processes,
        child_args: vec![
            format!("--profile-dir={}", profile_dir.display()),
            format!("--cluster-id={}", c.cluster_id),
            format!("--wait-files={}", c.wait_files),
        ],
    };
    let timeout = Duration::from_secs_f64(c.timeout);
    let mut out = match &cli.cmd {
        Cmd::FleetWorker { .. } => serve_child(&conn, &opts).map(|()| Value::Null),
        Cmd::Engines { hold, .. } => workloads::registration::run(
            &client,
            &opts,
            timeout,
            Duration::from_secs_f64(*hold),
            c.pid,
        ),
        Cmd::LbThroughput(l) => {
            workloads::throughput::run(&client, &opts, timeout, &l.load(), false, c.pid)
        }
        Cmd::MuxThroughput(l) => {
            workloads::throughput::run(&client, &opts, timeout, &l.load(), true, c.pid)
        }
        Cmd::ExecuteAll { rounds, .. } => {
            workloads::execute_all::run(&client, &opts, timeout, *rounds)
        }
        Cmd::Rss { load, every } => {
            let Some(pid) = c.pid else {
                anyhow::bail!("rss needs --pid (the controller's process id)");
            };
            workloads::rss::run(&client, &opts, timeout, &load.load(), *every, pid)
        }
    }?;
    if out.is_object() {
        out["sim_processes"] = json!(processes);
        out["sim_threads_per_process"] = json!(opts.threads);
    }
    Ok(out)
}

fn main() -> ExitCode {
    // No transparent huge pages: every oxipp_zmtp socket zero-fills a 256 KiB read buffer on
    // its first read, of which a simulated engine's small messages use a page or two, but
    // mimalloc asks for huge pages and each first touch then faults in (and zeroes) 2 MiB.
    // Registering 1,000 engines (3,000 sockets) spent 60% of the simulator's CPU zeroing them.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let cli = Cli::parse();
    let nofile = limits::raise_nofile();
    let (mut out, code) = match run(&cli, nofile) {
        // A helper process has already written its own protocol lines.
        Ok(Value::Null) => return ExitCode::SUCCESS,
        Ok(v) => {
            let ok = v.get("ok").and_then(Value::as_bool).unwrap_or(true);
            (
                v,
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                },
            )
        }
        Err(e) => (
            json!({ "ok": false, "error": format!("{e:#}") }),
            ExitCode::FAILURE,
        ),
    };
    out["workload"] = json!(cli.cmd.name());
    out["nofile_limit"] = json!(nofile);
    out["simulator_cpu_s"] = json!(procfs::self_cpu_seconds());
    println!("{out}");
    code
}
