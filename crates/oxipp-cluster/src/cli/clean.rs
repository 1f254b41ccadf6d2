//! `oxipp clean`: removes what stopped clusters left in a profile (cluster files whose
//! processes are gone, their connection and engine-state files) and the log files, like
//! `ipcluster clean`. Files of running clusters are kept.

use std::collections::HashSet;
use std::path::PathBuf;

use clap::Args;

use super::where_::Where;
use crate::local::cluster_file::ClusterFile;
use crate::local::layout::Layout;

/// Remove files of stopped clusters and logs (ipcluster clean).
#[derive(Debug, Args)]
pub struct CleanArgs {
    #[command(flatten)]
    pub place: Where,
}

impl CleanArgs {
    pub fn run(self) -> i32 {
        let profile_dir = self.place.profile_dir();
        let mut running_ids = HashSet::new();
        let mut removed: Vec<PathBuf> = Vec::new();
        let mut remove = |p: PathBuf| {
            if std::fs::remove_file(&p).is_ok() {
                removed.push(p);
            }
        };
        for f in ClusterFile::all_in(&profile_dir) {
            match f {
                Ok(c) if c.running() => {
                    running_ids.insert(c.layout.cluster_id.clone());
                }
                Ok(c) => {
                    remove(c.layout.oxipp_state_file());
                    remove(c.layout.cluster_file());
                }
                Err(e) => eprintln!("oxipp clean: leaving unreadable {e}"),
            }
        }
        // connection files of clusters that are not running (any id, also without cluster file)
        let security = profile_dir.join("security");
        for p in files_in(&security) {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let id = name
                .strip_prefix("ipcontroller")
                .and_then(|r| {
                    r.strip_suffix("-client.json")
                        .or(r.strip_suffix("-engine.json"))
                })
                .map(|r| r.strip_prefix('-').unwrap_or(r).to_string());
            if let Some(id) = id {
                if !running_ids.contains(&id) {
                    remove(p);
                }
            }
        }
        for p in files_in(&profile_dir.join("log")) {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let belongs_to_running = running_ids.iter().any(|id| {
                let l = Layout::new(&profile_dir, id.clone());
                p == l.engine_state_file()
                    || p == l.supervisor_log()
                    || name.contains(&format!("-{id}-"))
            });
            if (name.ends_with(".log") || name.starts_with("engines")) && !belongs_to_running {
                remove(p);
            }
        }
        println!(
            "oxipp clean: removed {} file(s) in {}",
            removed.len(),
            profile_dir.display()
        );
        0
    }
}

fn files_in(dir: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default()
}
