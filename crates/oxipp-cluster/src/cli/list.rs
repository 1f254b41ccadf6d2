//! `oxipp list`: the clusters of a profile (or of every profile), like `ipcluster list`.

use clap::Args;

use super::where_::Where;
use crate::local::cluster_file::ClusterFile;
use crate::local::process;

/// List clusters (ipcluster list).
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub place: Where,
}

impl ListArgs {
    pub fn run(self) -> i32 {
        let profiles = if self.place.explicit_profile() {
            vec![self.place.profile_dir()]
        } else {
            self.place.all_profiles()
        };
        println!(
            "{:<40} {:<20} {:<8} {:>7} {:>10}",
            "PROFILE", "CLUSTER ID", "RUNNING", "ENGINES", "PID"
        );
        for dir in profiles {
            for f in ClusterFile::all_in(&dir) {
                match f {
                    Ok(c) => {
                        let alive = c.engine_pids().filter(|p| process::alive(*p)).count();
                        let pid = if c.supervisor_pid > 0 {
                            c.supervisor_pid
                        } else {
                            c.controller_pid
                        };
                        println!(
                            "{:<40} {:<20} {:<8} {:>7} {:>10}",
                            c.layout.profile_dir.display(),
                            format!("{:?}", c.layout.cluster_id),
                            if c.running() { "True" } else { "False" },
                            alive,
                            pid
                        );
                    }
                    Err(e) => eprintln!("oxipp list: {e}"),
                }
            }
        }
        0
    }
}
