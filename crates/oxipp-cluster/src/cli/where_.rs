//! `--profile`, `--profile-dir`, `--ipython-dir`, `--cluster-id`: which cluster a subcommand
//! is about, resolved like stock (`$IPP_PROFILE_DIR`, `$IPYTHONDIR`, `$IPP_CLUSTER_ID`).

use std::path::PathBuf;

use clap::Args;
use oxipp_wire::profile::{self, ProfileArgs};

use crate::local::layout::Layout;

#[derive(Debug, Clone, Args)]
pub struct Where {
    /// IPython profile name (default: default)
    #[arg(long)]
    pub profile: Option<String>,
    /// Profile directory (overrides --profile)
    #[arg(long)]
    pub profile_dir: Option<PathBuf>,
    /// IPython directory holding the profiles (default: $IPYTHONDIR or ~/.ipython)
    #[arg(long)]
    pub ipython_dir: Option<PathBuf>,
    /// Cluster id (default: $IPP_CLUSTER_ID, else none)
    #[arg(long)]
    pub cluster_id: Option<String>,
}

impl Where {
    /// Whether a profile was named explicitly (else some commands look at every profile).
    pub fn explicit_profile(&self) -> bool {
        self.profile.is_some()
            || self.profile_dir.is_some()
            || std::env::var("IPP_PROFILE_DIR").is_ok_and(|v| !v.is_empty())
    }

    pub fn profile_dir(&self) -> PathBuf {
        let dir = profile::resolve(&ProfileArgs {
            profile: self.profile.clone(),
            profile_dir: self.profile_dir.clone(),
            ipython_dir: self.ipython_dir.clone(),
        });
        std::path::absolute(&dir).unwrap_or(dir)
    }

    pub fn cluster_id(&self) -> String {
        self.cluster_id
            .clone()
            .unwrap_or_else(profile::env_cluster_id)
    }

    pub fn layout(&self) -> Layout {
        Layout::new(self.profile_dir(), self.cluster_id())
    }

    /// Every `profile_*` directory of the IPython directory.
    pub fn all_profiles(&self) -> Vec<PathBuf> {
        let root = profile::ipython_dir(self.ipython_dir.as_deref());
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.is_dir()
                            && p.file_name()
                                .and_then(|n| n.to_str())
                                .is_some_and(|n| n.starts_with("profile_"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        dirs.sort();
        dirs
    }
}
