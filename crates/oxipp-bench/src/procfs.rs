//! Memory and CPU of a controller, read from `/proc`.
//!
//! The stock controller is a process tree (Hub plus scheduler children), so every figure is
//! taken for the whole tree as well as for the main process: a Hub that looks flat while its
//! task scheduler child grows would otherwise hide the growth.

use std::collections::HashMap;
use std::fs;

use serde::Serialize;

/// Linux reports `/proc/<pid>/stat` times in USER_HZ ticks, which is 100 on every Linux ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading for a process and its descendants.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Usage {
    /// VmRSS of the main process, KiB.
    pub rss_kib: u64,
    /// Sum of VmRSS over the process and all its descendants, KiB.
    pub tree_rss_kib: u64,
    /// user + system CPU seconds of the process tree (exited children are not counted).
    pub tree_cpu_s: f64,
    /// Number of processes in the tree.
    pub processes: usize,
}

/// Reads the usage of `pid` and its descendants; `None` if `pid` is gone.
pub fn usage(pid: u32) -> Option<Usage> {
    let rss_kib = vm_rss_kib(pid)?;
    let tree = tree(pid);
    let tree_rss_kib = tree.iter().filter_map(|&p| vm_rss_kib(p)).sum();
    let tree_cpu_s = tree.iter().filter_map(|&p| cpu_seconds(p)).sum();
    Some(Usage {
        rss_kib,
        tree_rss_kib,
        tree_cpu_s,
        processes: tree.len(),
    })
}

/// CPU seconds (user + system) this process has used so far, all threads.
pub fn self_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id()).unwrap_or(0.0)
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `(ppid, utime + stime ticks)` from a `/proc/<pid>/stat` line. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4, utime 14, stime 15.
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, t)| t as f64 / TICKS_PER_SECOND)
}

/// `pid` and all its descendants.
fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((ppid, _)) = fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .as_deref()
                .and_then(parse_stat)
            {
                children.entry(ppid).or_default().push(p);
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let line = "4242 (python (x) y) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(parse_stat(line), Some((17, 300)));
    }

    #[test]
    fn parses_vm_rss() {
        assert_eq!(parse_vm_rss("Name:\tx\nVmRSS:\t  12345 kB\n"), Some(12345));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let u = usage(std::process::id()).expect("own /proc entry");
        assert!(u.rss_kib > 0 && u.tree_rss_kib >= u.rss_kib && u.processes >= 1);
    }
}
