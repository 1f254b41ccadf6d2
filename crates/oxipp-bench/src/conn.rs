//! Finding and reading the controller's connection files.
//!
//! The simulator is pointed at a controller exactly like stock engines and clients are: through
//! `<profile>/security/ipcontroller[-<cluster_id>]-{client,engine}.json`. Reading both files
//! (rather than taking ports on the command line) means a benchmark also checks that a
//! controller writes files that stock peers can use.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use oxipp_wire::connection::{file_names, read_json, ClientInfo, EngineInfo};
use oxipp_wire::Signer;

/// Both connection files of one controller, plus the signer built from their shared key.
#[derive(Debug, Clone)]
pub struct Conn {
    pub client: ClientInfo,
    pub engine: EngineInfo,
    pub signer: Signer,
}

impl Conn {
    /// Waits up to `wait` for both files to exist and parse (a controller that is still
    /// starting writes them last), then loads them.
    pub fn load(profile_dir: &Path, cluster_id: &str, wait: Duration) -> Result<Conn> {
        let (client_name, engine_name) = file_names(cluster_id);
        let security = profile_dir.join("security");
        let client_path = security.join(client_name);
        let engine_path = security.join(engine_name);
        let deadline = Instant::now() + wait;
        loop {
            match Self::try_load(&client_path, &engine_path) {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() >= deadline => {
                    return Err(e).with_context(|| {
                        format!(
                            "no usable connection files after {:.0} s",
                            wait.as_secs_f64()
                        )
                    })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn try_load(client_path: &Path, engine_path: &Path) -> Result<Conn> {
        let client: ClientInfo =
            read_json(client_path).with_context(|| format!("reading {}", client_path.display()))?;
        let engine: EngineInfo =
            read_json(engine_path).with_context(|| format!("reading {}", engine_path.display()))?;
        if client.key != engine.key {
            bail!("client and engine connection files carry different keys");
        }
        if engine.broadcast.is_empty() {
            bail!("engine connection file lists no broadcast ports");
        }
        let signer = Signer::new(client.key.as_bytes(), &client.signature_scheme)
            .map_err(anyhow::Error::msg)?;
        Ok(Conn {
            client,
            engine,
            signer,
        })
    }

    /// Client-side endpoint for `port`.
    pub fn client_url(&self, port: u16) -> String {
        format!("{}:{port}", connectable(&self.client.interface))
    }

    /// Engine-side endpoint for `port`.
    pub fn engine_url(&self, port: u16) -> String {
        format!("{}:{port}", connectable(&self.engine.interface))
    }
}

/// Readers map wildcard interfaces to loopback (we only ever run on the controller's machine),
/// as stock clients do when `location` is the local host.
fn connectable(interface: &str) -> String {
    match interface.split_once("://") {
        Some((scheme, "*" | "0.0.0.0")) => format!("{scheme}://127.0.0.1"),
        _ => interface.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_become_loopback() {
        assert_eq!(connectable("tcp://*"), "tcp://127.0.0.1");
        assert_eq!(connectable("tcp://0.0.0.0"), "tcp://127.0.0.1");
        assert_eq!(connectable("tcp://10.1.2.3"), "tcp://10.1.2.3");
    }
}
