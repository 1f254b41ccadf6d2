//! The two JSON connection files (`ipcontroller[-<cluster_id>]-{client,engine}.json`).
//!
//! Files are written with mode 0600 to a temporary name and renamed into place, so a reader
//! polling for the file never sees partial JSON and never sees the key with loose permissions.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientInfo {
    pub ssh: String,
    pub interface: String,
    pub registration: u16,
    pub control: u16,
    pub mux: u16,
    pub task: u16,
    pub task_scheme: String,
    pub iopub: u16,
    pub notification: u16,
    pub broadcast: u16,
    pub key: String,
    pub curve_serverkey: Option<String>,
    pub location: String,
    pub pack: String,
    pub unpack: String,
    pub signature_scheme: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EngineInfo {
    pub ssh: String,
    pub interface: String,
    pub registration: u16,
    pub control: u16,
    pub mux: u16,
    pub task: u16,
    pub iopub: u16,
    pub hb_ping: u16,
    pub hb_pong: u16,
    pub broadcast: Vec<u16>,
    pub key: String,
    pub curve_serverkey: Option<String>,
    pub location: String,
    pub pack: String,
    pub unpack: String,
    pub signature_scheme: String,
}

/// File names for a cluster id (empty = none), as stock names them.
pub fn file_names(cluster_id: &str) -> (String, String) {
    if cluster_id.is_empty() {
        (
            "ipcontroller-client.json".into(),
            "ipcontroller-engine.json".into(),
        )
    } else {
        (
            format!("ipcontroller-{cluster_id}-client.json"),
            format!("ipcontroller-{cluster_id}-engine.json"),
        )
    }
}

/// Writes `value` as indented JSON with mode 0600, atomically.
pub fn write_private_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|s| s.to_str()).unwrap_or("conn"),
        std::process::id()
    ));
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> std::io::Result<T> {
    let text = std::fs::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// A random HMAC key in the stock format (`8hex-24hex`).
pub fn new_key() -> String {
    crate::session::new_id()
}

/// Maps a wildcard interface (`tcp://*`, `tcp://0.0.0.0`) to something connectable, as stock
/// `disambiguate_url` does: loopback when the controller's `location` is this machine (or
/// unknown), else `location`.
pub fn disambiguate(interface: &str, location: &str) -> String {
    let Some((scheme, host)) = interface.split_once("://") else {
        return interface.to_string();
    };
    if host != "*" && host != "0.0.0.0" {
        return interface.to_string();
    }
    let local = location.is_empty()
        || location == "localhost"
        || location.starts_with("127.")
        || hostname().as_deref() == Some(location);
    let host = if local { "127.0.0.1" } else { location };
    format!("{scheme}://{host}")
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod disambiguate_tests {
    use super::disambiguate;

    #[test]
    fn wildcards_become_connectable() {
        assert_eq!(disambiguate("tcp://0.0.0.0", "10.1.2.3"), "tcp://10.1.2.3");
        assert_eq!(disambiguate("tcp://*", ""), "tcp://127.0.0.1");
        assert_eq!(disambiguate("tcp://10.0.0.1", "x"), "tcp://10.0.0.1");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(file_names("").0, "ipcontroller-client.json");
        assert_eq!(file_names("abc").1, "ipcontroller-abc-engine.json");
    }

    #[test]
    fn private_and_round_trips() {
        let dir = std::env::temp_dir().join(format!("oxipp-wire-test-{}", std::process::id()));
        let p = dir.join("x.json");
        let info = EngineInfo {
            ssh: String::new(),
            interface: "tcp://127.0.0.1".into(),
            registration: 1,
            control: 2,
            mux: 3,
            task: 4,
            iopub: 5,
            hb_ping: 6,
            hb_pong: 7,
            broadcast: vec![8, 9],
            key: new_key(),
            curve_serverkey: None,
            location: "host".into(),
            pack: "json".into(),
            unpack: "json".into(),
            signature_scheme: "hmac-sha256".into(),
        };
        write_private_json(&p, &info).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let back: EngineInfo = read_json(&p).unwrap();
        assert_eq!(back, info);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
