//! `oxipp start -n N`: a controller and N engines, like `ipcluster start`.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

use super::engine::python;
use super::where_::Where;
use crate::local::cluster_file::ClusterFile;
use crate::local::registered::{self, WaitError};
use crate::local::supervisor::{self, oxipp_cmd, tail, Plan};

/// Start a controller and N engines (ipcluster start).
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Number of engines
    #[arg(short = 'n', long, default_value_t = 4)]
    pub n: usize,
    #[command(flatten)]
    pub place: Where,
    /// Return once all engines are registered, leaving the cluster running in the background
    /// (`oxipp stop` stops it)
    #[arg(long)]
    pub daemonize: bool,
    /// Engine command, split on whitespace (default: `$OXIPP_PYTHON -m oxipp.engine`, or
    /// `python3 -m oxipp.engine`); `--profile-dir` and `--cluster-id` are appended
    #[arg(long, alias = "engines-cmd")]
    pub engine_cmd: Option<String>,
    /// Seconds to wait for the engines to register (--daemonize)
    #[arg(long, default_value_t = 60.0)]
    pub engine_timeout: f64,
    /// Extra controller flags, after `--` (e.g. `-- --ping=1000 --nodb`)
    #[arg(last = true)]
    pub controller_args: Vec<String>,
    /// Internal: run as the background supervisor of `--daemonize`
    #[arg(long, hide = true)]
    pub supervise: bool,
}

impl StartArgs {
    fn plan(&self) -> Plan {
        let engine_cmd = match &self.engine_cmd {
            Some(cmd) => cmd.split_whitespace().map(String::from).collect(),
            None => vec![python(), "-m".into(), "oxipp.engine".into()],
        };
        Plan {
            layout: self.place.layout(),
            n: self.n,
            controller_cmd: oxipp_cmd("controller"),
            controller_args: self.controller_args.clone(),
            engine_cmd,
        }
    }

    pub fn run(self) -> i32 {
        let plan = self.plan();
        if plan.engine_cmd.is_empty() {
            eprintln!("oxipp start: --engine-cmd is empty");
            return 2;
        }
        if self.supervise {
            return supervisor::run(plan, false, supervisor::stop_flag(false));
        }
        if !self.daemonize {
            return supervisor::run(plan, true, supervisor::stop_flag(true));
        }
        self.daemonize(plan)
    }

    /// Starts the supervisor in the background and waits, showing progress, until every
    /// engine registered (exit 0) or the supervisor gave up (exit 1, with its log).
    fn daemonize(&self, plan: Plan) -> i32 {
        let t0 = Instant::now();
        let layout = plan.layout.clone();
        if let Err(e) = oxipp_wire::profile::ensure(&layout.profile_dir) {
            eprintln!(
                "oxipp start: creating {}: {e}",
                layout.profile_dir.display()
            );
            return 1;
        }
        let log_path = layout.supervisor_log();
        let log = match OpenOptions::new().create(true).append(true).open(&log_path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("oxipp start: opening {}: {e}", log_path.display());
                return 1;
            }
        };
        let mut argv = oxipp_cmd("start");
        argv.extend([
            "--supervise".to_string(),
            format!("-n={}", plan.n),
            format!("--profile-dir={}", layout.profile_dir.display()),
            format!("--cluster-id={}", layout.cluster_id),
            format!("--engine-cmd={}", plan.engine_cmd.join(" ")),
        ]);
        if !plan.controller_args.is_empty() {
            argv.push("--".into());
            argv.extend(plan.controller_args.iter().cloned());
        }
        let stdout = log.try_clone();
        let mut child = match stdout.and_then(|out| {
            Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(log)
                .process_group(0)
                .spawn()
        }) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("oxipp start: starting the supervisor `{}`: {e}", argv[0]);
                return 1;
            }
        };
        let supervisor_pid = child.id();
        let n = plan.n;
        let cluster_file = layout.cluster_file();
        let mut check = move || -> Result<(), String> {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "the cluster supervisor {}",
                    crate::local::process::describe_exit(status)
                ));
            }
            // the supervisor drops engines that exit from the file: fewer than N cannot make it
            match ClusterFile::read(&cluster_file) {
                Ok(f) if f.supervisor_pid == supervisor_pid && f.n_engines() < n => Err(format!(
                    "{} of {n} engines exited before all registered (their logs are in {})",
                    n - f.n_engines(),
                    f.layout.log_dir().display()
                )),
                _ => Ok(()),
            }
        };
        // the supervisor writes the cluster file once the controller is up and engines started
        let file_ready = || {
            ClusterFile::read(&layout.cluster_file())
                .is_ok_and(|f| f.supervisor_pid == supervisor_pid)
        };
        // (an engine that exits this early is reported by `check` once the file exists)
        let deadline = Instant::now() + Duration::from_secs(30);
        while !file_ready() {
            if let Err(why) = check() {
                return fail(&why, &log_path);
            }
            if Instant::now() > deadline {
                return fail("the controller did not start within 30 s", &log_path);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let progress = |c: usize| println!("engines registered: {c}/{n}");
        match registered::wait_for(
            &layout,
            n,
            Duration::from_secs_f64(self.engine_timeout.max(0.0)),
            progress,
            &mut check,
        ) {
            Ok(c) => {
                println!(
                    "cluster ready: {c} engines in {:.2} s (profile {}, cluster id {:?}; \
                     supervisor pid {supervisor_pid}, log {})",
                    t0.elapsed().as_secs_f64(),
                    layout.profile_dir.display(),
                    layout.cluster_id,
                    log_path.display()
                );
                0
            }
            Err(WaitError::Aborted(why)) => fail(&why, &log_path),
            Err(WaitError::TimedOut { registered }) => fail(
                &format!(
                    "only {registered} of {n} engines registered within {} s; the cluster keeps \
                     running (`oxipp stop` to stop it)",
                    self.engine_timeout
                ),
                &log_path,
            ),
        }
    }
}

fn fail(why: &str, log: &std::path::Path) -> i32 {
    eprintln!("oxipp start: {why}");
    eprintln!(
        "oxipp start: last lines of {}:\n{}",
        log.display(),
        tail(log, 15)
    );
    1
}
