//! IPython profile directories, resolved the way stock ipyparallel resolves them.
//!
//! Order: an explicit profile dir (`--profile-dir`), then `$IPP_PROFILE_DIR` (launchers pass
//! the profile only this way), then `<ipython_dir>/profile_<name>` where ipython_dir is
//! `--ipython-dir`, `$IPYTHONDIR` or `~/.ipython`. Empty values count as unset, because the
//! stock test suite exports the variables empty.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct ProfileArgs {
    pub profile: Option<String>,
    pub profile_dir: Option<PathBuf>,
    pub ipython_dir: Option<PathBuf>,
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// The IPython directory (`--ipython-dir`, `$IPYTHONDIR`, `~/.ipython`).
pub fn ipython_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return expand_home(p);
    }
    if let Some(p) = env_nonempty("IPYTHONDIR") {
        return expand_home(Path::new(&p));
    }
    home().join(".ipython")
}

fn home() -> PathBuf {
    env_nonempty("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn expand_home(p: &Path) -> PathBuf {
    match p.strip_prefix("~") {
        Ok(rest) => home().join(rest),
        Err(_) => p.to_path_buf(),
    }
}

/// Resolves the profile directory without creating it.
pub fn resolve(args: &ProfileArgs) -> PathBuf {
    if let Some(p) = &args.profile_dir {
        return expand_home(p);
    }
    if let Some(p) = env_nonempty("IPP_PROFILE_DIR") {
        return expand_home(Path::new(&p));
    }
    let name = args
        .profile
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    ipython_dir(args.ipython_dir.as_deref()).join(format!("profile_{name}"))
}

/// Creates the profile directory and its standard subdirectories (`security` is 0700).
pub fn ensure(dir: &Path) -> std::io::Result<()> {
    for sub in ["security", "log", "pid", "startup"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("security"), std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The cluster id from `$IPP_CLUSTER_ID` (empty if unset).
pub fn env_cluster_id() -> String {
    std::env::var("IPP_CLUSTER_ID").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_dir_wins() {
        let a = ProfileArgs {
            profile_dir: Some("/tmp/x".into()),
            profile: Some("p".into()),
            ..Default::default()
        };
        assert_eq!(resolve(&a), PathBuf::from("/tmp/x"));
    }

    #[test]
    fn profile_name_under_ipython_dir() {
        let a = ProfileArgs {
            profile: Some("iptest".into()),
            ipython_dir: Some("/tmp/ipy".into()),
            ..Default::default()
        };
        // only valid when IPP_PROFILE_DIR is not set in the test environment
        if env_nonempty("IPP_PROFILE_DIR").is_none() {
            assert_eq!(resolve(&a), PathBuf::from("/tmp/ipy/profile_iptest"));
        }
    }
}
