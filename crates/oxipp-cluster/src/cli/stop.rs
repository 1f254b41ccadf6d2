//! `oxipp stop`: stops a cluster started by `oxipp start` (or stock `ipcluster start`).

use std::time::Duration;

use clap::Args;

use super::where_::Where;
use crate::local::cluster_file::ClusterFile;
use crate::local::process::{self, SIGTERM};

/// Stop a running cluster (ipcluster stop).
#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub place: Where,
    /// Stop every cluster of the profile
    #[arg(long)]
    pub all: bool,
    /// Seconds to wait for a clean stop before killing what is left
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
}

impl StopArgs {
    pub fn run(self) -> i32 {
        let files: Vec<Result<ClusterFile, String>> = if self.all {
            ClusterFile::all_in(&self.place.profile_dir())
        } else {
            let path = self.place.layout().cluster_file();
            if !path.exists() {
                eprintln!(
                    "oxipp stop: no cluster {:?} in {} (no {})",
                    self.place.cluster_id(),
                    self.place.profile_dir().display(),
                    path.display()
                );
                return 1;
            }
            vec![ClusterFile::read(&path)]
        };
        let mut rc = 0;
        for f in files {
            match f {
                Ok(c) => stop(&c, Duration::from_secs_f64(self.timeout.max(0.0))),
                Err(e) => {
                    eprintln!("oxipp stop: {e}");
                    rc = 1;
                }
            }
        }
        rc
    }
}

/// Asks the supervisor to stop everything; if there is none (stock cluster, or it died),
/// signals the recorded processes directly. Kills what is still alive after `timeout`.
pub fn stop(c: &ClusterFile, timeout: Duration) {
    let pids: Vec<u32> = c
        .engine_pids()
        .chain([c.controller_pid, c.supervisor_pid])
        .filter(|p| *p > 0)
        .collect();
    if c.supervisor_pid > 0 && process::alive(c.supervisor_pid) {
        process::signal(c.supervisor_pid, SIGTERM);
    } else {
        for &p in &pids {
            process::signal(p, SIGTERM);
        }
    }
    for p in process::wait_or_kill(&pids, timeout, || {}) {
        eprintln!("oxipp stop: pid {p} still running after {timeout:?}; killed it");
    }
    ClusterFile::remove(&c.layout);
    println!(
        "stopped cluster {:?} in {} ({} process(es))",
        c.layout.cluster_id,
        c.layout.profile_dir.display(),
        pids.len()
    );
}
