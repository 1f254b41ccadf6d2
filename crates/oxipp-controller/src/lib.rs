//! The oxipp controller: one Rust process that does the work of stock ipyparallel's
//! `ipcontroller` (Hub, heartbeat monitor, mux/control/IOPub relays, task and broadcast
//! schedulers) and speaks the same wire protocol, so stock clients and engines use it
//! unchanged.
//!
//! [`core::Controller`] holds all state and decisions without sockets; [`shell`] binds the
//! sockets and runs the poll loop.

pub mod book;
pub mod broadcast;
pub mod config;
pub mod core;
pub mod dask;
pub mod dask_process;
pub mod heartbeat;
pub mod outbox;
pub mod queries;
pub mod records;
pub mod registration;
pub mod registry;
pub mod relay;
pub mod shell;
pub mod stats;
pub mod tasks;

#[cfg(test)]
mod core_tests;

pub use config::Config;

const HELP: &str = "\
oxipp controller: the oxipp Hub and schedulers, a drop-in for ipcontroller.

Options (ipcontroller-compatible):
  --profile=NAME          IPython profile (default: default)
  --profile-dir=PATH      profile directory (or $IPP_PROFILE_DIR)
  --ipython-dir=PATH      IPython directory (or $IPYTHONDIR)
  --cluster-id=ID         cluster id (or $IPP_CLUSTER_ID)
  --ip=ADDR               bind address for clients and engines (default 127.0.0.1)
  --location=HOST         address advertised for '*' binds
  --ports=A-B             ports to use before random ones
  --ping=MS               heartbeat period (HeartMonitor.period, default 3000)
  --scheme=NAME           leastload (default), lru, plainrandom, twobin, weighted, pure
  --hwm=N                 tasks outstanding per engine (default 1, 0 = unlimited)
  --dictdb | --sqlitedb | --nodb   task database (default: bounded in-memory)
  --reuse                 reuse existing connection files
  --restore               reuse files and restore engines after a controller restart
  --log-level=LEVEL       DEBUG/INFO/WARN/ERROR or 10/20/30/40
  --Class.trait=VALUE     any ipcontroller trait we implement (others are ignored)
  --version, --help-all
Environment: IPP_PROFILE_DIR, IPP_CLUSTER_ID, IPP_SESSION_KEY, IPYTHONDIR.
";

/// Runs the controller with ipcontroller-style arguments (`--profile=x --ping=250 ...`) and
/// returns the process exit code. Both the `oxipp controller` CLI and `python -m
/// oxipp.controller` call this.
pub fn main_with_args(args: &[String]) -> i32 {
    let cfg = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("oxipp controller: {e}");
            return 2;
        }
    };
    if cfg.show_version {
        println!("{}", oxipp_wire::COMPAT_VERSION);
        return 0;
    }
    if cfg.show_help {
        print!("{HELP}");
        return 0;
    }
    init_logging(&cfg);
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    match shell::run(cfg) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("oxipp controller failed: {e:#}");
            eprintln!("oxipp controller: {e:#}");
            1
        }
    }
}

fn init_logging(cfg: &Config) {
    use tracing_subscriber::fmt;
    let level = cfg.log_level;
    let builder = fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false);
    let res = if cfg.log_to_file {
        let dir = cfg.profile_dir().join("log");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("ipcontroller-{}.log", std::process::id()));
        match std::fs::File::create(&path) {
            Ok(f) => builder.with_writer(std::sync::Mutex::new(f)).try_init(),
            Err(_) => builder.with_writer(std::io::stderr).try_init(),
        }
    } else {
        builder.with_writer(std::io::stderr).try_init()
    };
    let _ = res;
}
