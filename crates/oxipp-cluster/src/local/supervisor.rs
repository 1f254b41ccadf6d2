//! The supervisor: starts the controller and the engines, records them in the cluster file,
//! reports registrations and deaths, and stops everything when told to (SIGTERM/SIGINT).
//!
//! It runs in the foreground for `oxipp start`, or as a background copy of `oxipp start` for
//! `oxipp start --daemonize`. Engines added later by `oxipp engines` are not its children; it
//! adopts them from the cluster file and watches them by pid.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cluster_file::{ClusterFile, EngineEntry};
use super::layout::Layout;
use super::process;
use super::registered;

/// How long the controller gets to write its connection files.
const CONTROLLER_READY: Duration = Duration::from_secs(30);
/// How long stopped processes get between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_millis(50);

/// What to start.
#[derive(Debug, Clone)]
pub struct Plan {
    pub layout: Layout,
    pub n: usize,
    /// The controller command without profile/cluster flags (`[oxipp, controller, extra…]`).
    pub controller_cmd: Vec<String>,
    pub controller_args: Vec<String>,
    pub engine_cmd: Vec<String>,
}

/// Report lines go to the supervisor log, and to stdout in the foreground.
pub struct Reporter {
    log: Option<File>,
    echo: bool,
}

impl Reporter {
    pub fn new(layout: &Layout, echo: bool) -> Reporter {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(layout.supervisor_log())
            .ok();
        Reporter { log, echo }
    }

    pub fn say(&mut self, line: &str) {
        if self.echo {
            println!("{line}");
        }
        if let Some(f) = self.log.as_mut() {
            let now = oxipp_wire::dates::now_iso();
            let _ = writeln!(f, "{now} {line}");
        }
    }
}

/// Starts `cmd` for this cluster (`--profile-dir`/`--cluster-id` appended, then `extra`) as a
/// process group leader, so a terminal's Ctrl-C reaches only the supervisor, which then stops
/// the processes in order; stdout and stderr go to `log_path`.
fn spawn_logged(
    layout: &Layout,
    cmd: &[String],
    extra: &[String],
    log_path: &Path,
) -> std::io::Result<Child> {
    let (program, args) = cmd
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    let log = File::create(log_path)?;
    Command::new(program)
        .args(args)
        .arg(format!("--profile-dir={}", layout.profile_dir.display()))
        .arg(format!("--cluster-id={}", layout.cluster_id))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("starting `{program}`: {e}")))
}

/// Starts one engine of set `set_id`, output in its own log file.
pub fn spawn_engine(
    layout: &Layout,
    engine_cmd: &[String],
    set_id: &str,
    index: usize,
) -> std::io::Result<(Child, EngineEntry)> {
    let log_path = layout.engine_log(set_id, index);
    let child = spawn_logged(layout, engine_cmd, &[], &log_path)?;
    let entry = EngineEntry {
        pid: child.id(),
        output_file: log_path.display().to_string(),
    };
    Ok((child, entry))
}

/// An engine-set id like stock's (a number that differs between calls).
pub fn new_set_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}{:03}",
        now.as_secs() % 1_000_000_000,
        now.subsec_millis()
    )
}

struct Running {
    plan: Plan,
    report: Reporter,
    controller: Child,
    /// Our engine children by pid.
    engines: BTreeMap<u32, Child>,
    file: ClusterFile,
}

/// Runs the supervisor until stopped or until the controller dies. Returns the exit code.
pub fn run(plan: Plan, echo: bool, stop: Arc<AtomicBool>) -> i32 {
    let mut report = Reporter::new(&plan.layout, echo);
    match start(plan, &mut report) {
        Ok(running) => running.supervise(stop),
        Err(e) => {
            report.say(&format!("oxipp start: {e}"));
            eprintln!("oxipp start: {e}");
            1
        }
    }
}

fn start(plan: Plan, report: &mut Reporter) -> Result<Running, String> {
    let layout = plan.layout.clone();
    oxipp_wire::profile::ensure(&layout.profile_dir)
        .map_err(|e| format!("creating {}: {e}", layout.profile_dir.display()))?;
    if let Ok(existing) = ClusterFile::read(&layout.cluster_file()) {
        if existing.running() {
            return Err(format!(
                "cluster {:?} in {} is already running (supervisor pid {}); `oxipp stop` it first",
                layout.cluster_id,
                layout.profile_dir.display(),
                existing.supervisor_pid
            ));
        }
    }
    // stale files of an earlier cluster would look like a ready controller / registered engines
    let (client_json, engine_json) = layout.connection_files();
    for f in [&client_json, &engine_json, &layout.engine_state_file()] {
        let _ = std::fs::remove_file(f);
    }
    let t0 = Instant::now();
    let controller_log = layout.controller_log(std::process::id());
    let mut controller = spawn_logged(
        &layout,
        &plan.controller_cmd,
        &plan.controller_args,
        &controller_log,
    )
    .map_err(|e| format!("the controller: {e}"))?;
    report.say(&format!(
        "controller started (pid {}), log {}",
        controller.id(),
        controller_log.display()
    ));
    while !(client_json.exists() && engine_json.exists()) {
        if let Ok(Some(status)) = controller.try_wait() {
            return Err(format!(
                "the controller {} before writing its connection files; see {}",
                process::describe_exit(status),
                controller_log.display()
            ));
        }
        if t0.elapsed() > CONTROLLER_READY {
            let _ = controller.kill();
            return Err(format!(
                "no connection files from the controller after {} s; see {}",
                CONTROLLER_READY.as_secs(),
                controller_log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let set_id = new_set_id();
    let mut engines = BTreeMap::new();
    let mut entries = Vec::new();
    for i in 0..plan.n {
        match spawn_engine(&layout, &plan.engine_cmd, &set_id, i) {
            Ok((child, entry)) => {
                engines.insert(child.id(), child);
                entries.push(entry);
            }
            Err(e) => {
                for c in engines.values_mut() {
                    let _ = c.kill();
                }
                let _ = controller.kill();
                return Err(e.to_string());
            }
        }
    }
    report.say(&format!(
        "{} engine(s) started: {}",
        plan.n,
        plan.engine_cmd.join(" ")
    ));
    let mut sets = BTreeMap::new();
    if !entries.is_empty() {
        sets.insert(set_id, entries);
    }
    let file = ClusterFile {
        layout: layout.clone(),
        supervisor_pid: std::process::id(),
        controller_pid: controller.id(),
        controller_log: controller_log.display().to_string(),
        controller_args: plan.controller_args.clone(),
        engine_cmd: plan.engine_cmd.clone(),
        engine_sets: sets,
    };
    file.write()
        .map_err(|e| format!("writing {}: {e}", layout.cluster_file().display()))?;
    Ok(Running {
        plan,
        report: std::mem::replace(
            report,
            Reporter {
                log: None,
                echo: false,
            },
        ),
        controller,
        engines,
        file,
    })
}

impl Running {
    fn supervise(mut self, stop: Arc<AtomicBool>) -> i32 {
        let t0 = Instant::now();
        let mut registered = usize::MAX;
        let mut ready = false;
        let mut last_reload = Instant::now();
        loop {
            if stop.load(Ordering::Relaxed) {
                self.report.say("stopping the cluster");
                self.stop_all();
                return 0;
            }
            let c = registered::count(&self.plan.layout);
            if c != registered {
                registered = c;
                self.report.say(&format!(
                    "engines registered: {c}/{}",
                    self.file.n_engines()
                ));
                if !ready && c >= self.plan.n {
                    ready = true;
                    self.report.say(&format!(
                        "cluster ready: {c} engines in {:.2} s (profile {}, cluster id {:?})",
                        t0.elapsed().as_secs_f64(),
                        self.plan.layout.profile_dir.display(),
                        self.plan.layout.cluster_id
                    ));
                }
            }
            if let Ok(Some(status)) = self.controller.try_wait() {
                self.report.say(&format!(
                    "the controller (pid {}) {}; stopping the engines",
                    self.controller.id(),
                    process::describe_exit(status)
                ));
                self.stop_all();
                return 1;
            }
            self.reap_engines();
            if last_reload.elapsed() > Duration::from_secs(1) {
                last_reload = Instant::now();
                self.watch_adopted();
            }
            std::thread::sleep(TICK);
        }
    }

    /// Reports our own engine children that exited and drops them from the cluster file.
    fn reap_engines(&mut self) {
        let mut gone = Vec::new();
        for (pid, child) in self.engines.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                gone.push((*pid, process::describe_exit(status)));
            }
        }
        for (pid, how) in gone {
            self.engines.remove(&pid);
            self.forget_engine(pid, &how);
        }
    }

    /// Engines added by `oxipp engines` live in the cluster file only: watch them by pid.
    fn watch_adopted(&mut self) {
        if let Ok(on_disk) = ClusterFile::read(&self.plan.layout.cluster_file()) {
            self.file.engine_sets = on_disk.engine_sets;
        }
        let adopted: Vec<u32> = self
            .file
            .engine_pids()
            .filter(|p| !self.engines.contains_key(p))
            .collect();
        for pid in adopted {
            if !process::alive(pid) {
                self.forget_engine(pid, "exited");
            }
        }
    }

    fn forget_engine(&mut self, pid: u32, how: &str) {
        let mut log = None;
        for entries in self.file.engine_sets.values_mut() {
            if let Some(i) = entries.iter().position(|e| e.pid == pid) {
                log = Some(entries.remove(i).output_file);
            }
        }
        self.file.engine_sets.retain(|_, v| !v.is_empty());
        let _ = self.file.write();
        self.report.say(&format!(
            "engine pid {pid} {how} (log {}); {} engine process(es) left",
            log.as_deref().unwrap_or("?"),
            self.file.n_engines()
        ));
    }

    /// SIGTERM to engines, then the controller; SIGKILL what is left after the grace period.
    fn stop_all(&mut self) {
        if let Ok(on_disk) = ClusterFile::read(&self.plan.layout.cluster_file()) {
            self.file.engine_sets = on_disk.engine_sets;
        }
        let pids: Vec<u32> = self.file.engine_pids().collect();
        for &pid in &pids {
            process::signal(pid, process::SIGTERM);
        }
        let _ = self.controller.try_wait();
        process::signal(self.controller.id(), process::SIGTERM);
        let mut all = pids.clone();
        all.push(self.controller.id());
        let (engines, controller) = (&mut self.engines, &mut self.controller);
        let killed = process::wait_or_kill(&all, STOP_GRACE, || {
            for child in engines.values_mut() {
                let _ = child.try_wait();
            }
            let _ = controller.try_wait();
        });
        if !killed.is_empty() {
            self.report.say(&format!(
                "still running after {STOP_GRACE:?}, killed: {killed:?}"
            ));
        }
        for child in self.engines.values_mut() {
            let _ = child.wait();
        }
        let _ = self.controller.wait();
        ClusterFile::remove(&self.plan.layout);
        self.report.say("cluster stopped");
    }
}

/// The last lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Registers SIGTERM and SIGINT (and SIGHUP in the foreground: the terminal went away) to set
/// the returned flag instead of killing us outright. A background supervisor ignores SIGHUP.
pub fn stop_flag(foreground: bool) -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let _ = signal_hook::flag::register(sig, flag.clone());
    }
    let hup = if foreground {
        flag.clone()
    } else {
        Arc::new(AtomicBool::new(false))
    };
    let _ = signal_hook::flag::register(signal_hook::consts::SIGHUP, hup);
    flag
}

/// How to run another `oxipp` subcommand from this process: this executable when it is the
/// `oxipp` binary, or `python -m oxipp` when the command line came in through the Python
/// package (then this process is the Python interpreter). The package's entry point names its
/// interpreter in `$OXIPP_SELF_PYTHON`, because `current_exe()` resolves a venv's python
/// symlink to the base interpreter, which cannot import oxipp.
pub fn oxipp_cmd(subcommand: &str) -> Vec<String> {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("oxipp"));
    let is_oxipp = exe
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("oxipp"));
    if is_oxipp {
        return vec![exe.display().to_string(), subcommand.to_string()];
    }
    let python = std::env::var("OXIPP_SELF_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| exe.display().to_string());
    vec![python, "-m".into(), "oxipp".into(), subcommand.to_string()]
}
