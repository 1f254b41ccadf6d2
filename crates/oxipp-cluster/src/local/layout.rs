//! Where a cluster's files live inside its profile directory (stock names).

use std::path::{Path, PathBuf};

/// One cluster: a profile directory and a cluster id (empty = the default cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub profile_dir: PathBuf,
    pub cluster_id: String,
}

impl Layout {
    pub fn new(profile_dir: impl Into<PathBuf>, cluster_id: impl Into<String>) -> Self {
        Layout {
            profile_dir: profile_dir.into(),
            cluster_id: cluster_id.into(),
        }
    }

    pub fn security(&self) -> PathBuf {
        self.profile_dir.join("security")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.profile_dir.join("log")
    }

    /// `cluster-<id>.json` (stock writes `cluster-.json` for the default id).
    pub fn cluster_file(&self) -> PathBuf {
        self.security()
            .join(format!("cluster-{}.json", self.cluster_id))
    }

    /// (client, engine) connection files.
    pub fn connection_files(&self) -> (PathBuf, PathBuf) {
        let (c, e) = oxipp_wire::connection::file_names(&self.cluster_id);
        (self.security().join(c), self.security().join(e))
    }

    /// The controller's engine state file (`--restore`), whose `engines` map lists the
    /// registered engines: how the launcher counts registrations without a socket.
    pub fn engine_state_file(&self) -> PathBuf {
        self.log_dir()
            .join(format!("engines{}.json", self.cluster_id))
    }

    /// What only oxipp needs (supervisor pid, engine command), beside the cluster file because
    /// stock tools that load and re-save the cluster file (`ipcluster list`) drop unknown keys.
    pub fn oxipp_state_file(&self) -> PathBuf {
        self.profile_dir
            .join("pid")
            .join(format!("oxipp-cluster-{}.json", self.cluster_id))
    }

    /// The supervisor's report of what happened to the processes (engines that died, …).
    pub fn supervisor_log(&self) -> PathBuf {
        self.log_dir()
            .join(format!("oxipp-cluster-{}.log", self.cluster_id))
    }

    pub fn controller_log(&self, pid: u32) -> PathBuf {
        self.log_dir()
            .join(format!("ipcontroller-{}-{pid}.log", self.cluster_id))
    }

    pub fn engine_log(&self, set_id: &str, index: usize) -> PathBuf {
        self.log_dir()
            .join(format!("ipengine-{}-{set_id}-{index}.log", self.cluster_id))
    }

    /// The cluster id of a `cluster-<id>.json` path, if it is one.
    pub fn cluster_id_of(path: &Path) -> Option<String> {
        let name = path.file_name()?.to_str()?;
        Some(
            name.strip_prefix("cluster-")?
                .strip_suffix(".json")?
                .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_file_names() {
        let l = Layout::new("/p", "");
        assert_eq!(l.cluster_file(), PathBuf::from("/p/security/cluster-.json"));
        assert_eq!(
            l.connection_files().0,
            PathBuf::from("/p/security/ipcontroller-client.json")
        );
        let l = Layout::new("/p", "abc");
        assert_eq!(
            l.engine_state_file(),
            PathBuf::from("/p/log/enginesabc.json")
        );
        assert_eq!(
            Layout::cluster_id_of(&l.cluster_file()).as_deref(),
            Some("abc")
        );
        assert_eq!(Layout::cluster_id_of(Path::new("/p/security/x.json")), None);
    }
}
