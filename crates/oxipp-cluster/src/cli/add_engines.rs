//! `oxipp engines -n K`: more engines for a running cluster. They are not the supervisor's
//! children: it adopts them from the cluster file and watches them by pid.

use std::time::Duration;

use clap::Args;

use super::where_::Where;
use crate::local::cluster_file::ClusterFile;
use crate::local::registered::{self, WaitError};
use crate::local::supervisor::{new_set_id, spawn_engine};

/// Add engines to a running cluster.
#[derive(Debug, Args)]
pub struct EnginesArgs {
    /// Number of engines to add
    #[arg(short = 'n', long, default_value_t = 1)]
    pub n: usize,
    #[command(flatten)]
    pub place: Where,
    /// Engine command (default: the one the cluster was started with)
    #[arg(long)]
    pub engine_cmd: Option<String>,
    /// Seconds to wait for them to register
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
}

impl EnginesArgs {
    pub fn run(self) -> i32 {
        let layout = self.place.layout();
        let mut file = match ClusterFile::read(&layout.cluster_file()) {
            Ok(f) if f.running() => f,
            Ok(_) => {
                eprintln!(
                    "oxipp engines: the cluster in {} is not running",
                    layout.profile_dir.display()
                );
                return 1;
            }
            Err(e) => {
                eprintln!("oxipp engines: no running cluster: {e}");
                return 1;
            }
        };
        let cmd: Vec<String> = match &self.engine_cmd {
            Some(c) => c.split_whitespace().map(String::from).collect(),
            None => file.engine_cmd.clone(),
        };
        if cmd.is_empty() {
            eprintln!("oxipp engines: no engine command (give --engine-cmd)");
            return 2;
        }
        let before = registered::count(&layout);
        let set_id = new_set_id();
        let mut entries = Vec::new();
        // kept to notice engines that exit early; dropping a Child does not stop the process
        let mut children = Vec::new();
        for i in 0..self.n {
            match spawn_engine(&layout, &cmd, &set_id, i) {
                Ok((child, entry)) => {
                    children.push(child);
                    entries.push(entry);
                }
                Err(e) => {
                    eprintln!("oxipp engines: {e}");
                    return 1;
                }
            }
        }
        file.engine_sets.insert(set_id, entries);
        if let Err(e) = file.write() {
            eprintln!("oxipp engines: writing the cluster file: {e}");
            return 1;
        }
        let want = before + self.n;
        match registered::wait_for(
            &layout,
            want,
            Duration::from_secs_f64(self.timeout.max(0.0)),
            |c| println!("engines registered: {c}/{want}"),
            || {
                for c in children.iter_mut() {
                    if let Ok(Some(status)) = c.try_wait() {
                        return Err(format!(
                            "engine pid {} {} before registering (logs in {})",
                            c.id(),
                            crate::local::process::describe_exit(status),
                            layout.log_dir().display()
                        ));
                    }
                }
                Ok(())
            },
        ) {
            Ok(_) => 0,
            Err(WaitError::TimedOut { registered }) => {
                eprintln!(
                    "oxipp engines: {registered}/{want} registered after {} s",
                    self.timeout
                );
                1
            }
            Err(WaitError::Aborted(why)) => {
                eprintln!("oxipp engines: {why}");
                1
            }
        }
    }
}
