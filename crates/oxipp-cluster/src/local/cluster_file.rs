//! The cluster file, in the shape stock `Cluster.to_dict()` writes (checked against a file
//! written by `ipcluster start` 9.2.0), plus an `oxipp` section with the supervisor's pid and
//! the engine command. Stock tools may re-save the file without that section, so it is also
//! kept in `<profile>/pid/oxipp-cluster-<id>.json`, which wins when both exist.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use super::layout::Layout;
use super::process;

/// One engine process.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineEntry {
    pub pid: u32,
    pub output_file: String,
}

/// What a cluster file records.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterFile {
    pub layout: Layout,
    pub supervisor_pid: u32,
    pub controller_pid: u32,
    pub controller_log: String,
    pub controller_args: Vec<String>,
    pub engine_cmd: Vec<String>,
    /// Engine sets by id (stock uses a timestamp-like id per `start_engines` call).
    pub engine_sets: BTreeMap<String, Vec<EngineEntry>>,
}

impl ClusterFile {
    pub fn n_engines(&self) -> usize {
        self.engine_sets.values().map(Vec::len).sum()
    }

    pub fn engine_pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.engine_sets.values().flatten().map(|e| e.pid)
    }

    /// Running = its supervisor (or, failing that, its controller) is alive.
    pub fn running(&self) -> bool {
        process::alive(self.supervisor_pid) || process::alive(self.controller_pid)
    }

    pub fn to_json(&self) -> Value {
        let profile_dir = self.layout.profile_dir.display().to_string();
        let cluster_id = &self.layout.cluster_id;
        let sets: serde_json::Map<String, Value> = self
            .engine_sets
            .iter()
            .map(|(id, engines)| {
                let n = engines.len();
                let each: serde_json::Map<String, Value> = engines
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        (
                            i.to_string(),
                            json!({"cluster_id": cluster_id, "n": n, "output_file": e.output_file,
                                   "pid": e.pid, "profile_dir": profile_dir, "state": "running"}),
                        )
                    })
                    .collect();
                (
                    id.clone(),
                    json!({"cluster_id": cluster_id, "n": n, "pid": -1, "profile_dir": profile_dir,
                           "state": "running", "engines": each}),
                )
            })
            .collect();
        json!({
            "cluster": {
                "cluster_id": cluster_id,
                "controller_args": self.controller_args,
                "controller_ip": "",
                "controller_location": "",
                "delay": 1.0,
                "n": self.n_engines(),
                "profile_dir": profile_dir,
                "class": "ipyparallel.cluster.cluster.Cluster",
            },
            "controller": {
                "class": "local",
                "state": {"cluster_id": cluster_id, "output_file": self.controller_log,
                          "pid": self.controller_pid, "profile_dir": profile_dir,
                          "state": "running"},
            },
            "engines": {"class": "local", "sets": sets},
            "oxipp": {"supervisor_pid": self.supervisor_pid, "engine_cmd": self.engine_cmd},
        })
    }

    /// Reads a cluster file; files written by stock `ipcluster` load too (supervisor pid 0).
    pub fn from_json(layout: Layout, v: &Value) -> Result<ClusterFile, String> {
        let pid = |v: Option<&Value>| -> u32 {
            v.and_then(Value::as_i64)
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or(0)
        };
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        if !v.get("cluster").is_some_and(Value::is_object) {
            return Err("not a cluster file (no \"cluster\" section)".into());
        }
        let ctl = v.pointer("/controller/state");
        let mut engine_sets = BTreeMap::new();
        if let Some(sets) = v.pointer("/engines/sets").and_then(Value::as_object) {
            for (id, set) in sets {
                let mut engines: Vec<(usize, EngineEntry)> = set
                    .get("engines")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(i, e)| {
                                let entry = EngineEntry {
                                    pid: pid(e.get("pid")),
                                    output_file: e
                                        .get("output_file")
                                        .and_then(Value::as_str)
                                        .unwrap_or_default()
                                        .to_string(),
                                };
                                (i.parse().unwrap_or(usize::MAX), entry)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                engines.sort_by_key(|(i, _)| *i);
                engine_sets.insert(id.clone(), engines.into_iter().map(|(_, e)| e).collect());
            }
        }
        Ok(ClusterFile {
            layout,
            supervisor_pid: pid(v.pointer("/oxipp/supervisor_pid")),
            controller_pid: pid(ctl.and_then(|c| c.get("pid"))),
            controller_log: ctl
                .and_then(|c| c.get("output_file"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            controller_args: strings(v.pointer("/cluster/controller_args")),
            engine_cmd: strings(v.pointer("/oxipp/engine_cmd")),
            engine_sets,
        })
    }

    pub fn write(&self) -> std::io::Result<()> {
        let v = self.to_json();
        oxipp_wire::connection::write_private_json(&self.layout.oxipp_state_file(), &v["oxipp"])?;
        oxipp_wire::connection::write_private_json(&self.layout.cluster_file(), &v)
    }

    /// Removes the cluster file and its oxipp sidecar.
    pub fn remove(layout: &Layout) {
        let _ = std::fs::remove_file(layout.cluster_file());
        let _ = std::fs::remove_file(layout.oxipp_state_file());
    }

    pub fn read(path: &Path) -> Result<ClusterFile, String> {
        let cluster_id = Layout::cluster_id_of(path)
            .ok_or_else(|| format!("{}: not named cluster-<id>.json", path.display()))?;
        let profile_dir = path
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| format!("{}: not in <profile>/security", path.display()))?;
        let layout = Layout::new(profile_dir, cluster_id);
        let mut v: Value = oxipp_wire::connection::read_json(path).map_err(|e| e.to_string())?;
        if let Ok(ours) = oxipp_wire::connection::read_json::<Value>(&layout.oxipp_state_file()) {
            if let Some(obj) = v.as_object_mut() {
                obj.insert("oxipp".into(), ours);
            }
        }
        ClusterFile::from_json(layout, &v).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Every cluster file in a profile, sorted by cluster id; unreadable ones are reported.
    pub fn all_in(profile_dir: &Path) -> Vec<Result<ClusterFile, String>> {
        let Ok(dir) = std::fs::read_dir(profile_dir.join("security")) else {
            return Vec::new();
        };
        let mut paths: Vec<_> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| Layout::cluster_id_of(p).is_some())
            .collect();
        paths.sort();
        paths.iter().map(|p| ClusterFile::read(p)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ClusterFile {
        let mut sets = BTreeMap::new();
        sets.insert(
            "1795581013".to_string(),
            vec![
                EngineEntry {
                    pid: 11,
                    output_file: "/p/log/e0.log".into(),
                },
                EngineEntry {
                    pid: 12,
                    output_file: "/p/log/e1.log".into(),
                },
            ],
        );
        ClusterFile {
            layout: Layout::new("/p", "abc"),
            supervisor_pid: 9,
            controller_pid: 10,
            controller_log: "/p/log/c.log".into(),
            controller_args: vec!["--ping=200".into()],
            engine_cmd: vec!["python3".into(), "-m".into(), "oxipp.engine".into()],
            engine_sets: sets,
        }
    }

    #[test]
    fn round_trips_through_json() {
        let c = sample();
        let back = ClusterFile::from_json(c.layout.clone(), &c.to_json()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.n_engines(), 2);
        assert_eq!(back.engine_pids().collect::<Vec<_>>(), vec![11, 12]);
    }

    #[test]
    fn reads_a_file_stock_ipcluster_wrote() {
        // written by `ipcluster start -n 1 --daemonize` (ipyparallel 9.2.0)
        let stock = r#"{"cluster": {"cluster_id": "", "controller_args": [], "controller_ip": "",
          "controller_location": "", "delay": 1.0, "n": 1, "profile_dir": "/tmp/cf",
          "class": "ipyparallel.cluster.cluster.Cluster"}, "controller": {"class": "local",
          "state": {"cluster_id": "", "output_file": "/tmp/cf/log/ipcontroller-24545.log",
          "pid": 24546, "profile_dir": "/tmp/cf", "state": "running"}}, "engines": {"class":
          "local", "sets": {"1795581013": {"cluster_id": "", "n": 1, "pid": -1, "profile_dir":
          "/tmp/cf", "state": "running", "engines": {"0": {"cluster_id": "", "n": 1,
          "output_file": "/tmp/cf/log/ipengine--1795581013-0.log", "pid": 24576, "profile_dir":
          "/tmp/cf", "state": "running"}}}}}}"#;
        let v: Value = serde_json::from_str(stock).unwrap();
        let c = ClusterFile::from_json(Layout::new("/tmp/cf", ""), &v).unwrap();
        assert_eq!(c.controller_pid, 24546);
        assert_eq!(c.supervisor_pid, 0);
        assert_eq!(c.engine_pids().collect::<Vec<_>>(), vec![24576]);
        // and what we write has every key stock wrote
        let ours = c.to_json();
        for ptr in [
            "/cluster/delay",
            "/controller/state/output_file",
            "/engines/sets",
        ] {
            assert!(ours.pointer(ptr).is_some(), "{ptr}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let e = ClusterFile::from_json(Layout::new("/p", ""), &json!([1, 2])).unwrap_err();
        assert!(e.contains("not a cluster file"));
    }
}
