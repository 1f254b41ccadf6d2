//! Process limits a large simulated fleet runs into.
//!
//! Each simulated engine holds about six file descriptors (a shell ROUTER connected to three
//! ports, a heartbeat DEALER, and libzmq's per-socket mailbox fds) plus two more while it
//! registers, so 5,000 engines need ~40,000 descriptors, above common hard limits (20,000 in
//! this project's sandbox, which also lacks CAP_SYS_RESOURCE to raise it). The fleet is split
//! over processes when one is not enough (see `fleet::default_processes`).

use rlimit::Resource;

/// Descriptors budgeted per simulated engine (see the module comment).
pub const FDS_PER_ENGINE: u64 = 8;
/// What we ask for: enough for any single-process fleet we would run.
const WANTED: u64 = 1 << 16;

/// Raises the soft `RLIMIT_NOFILE` as far as allowed (the hard limit too when privileged) and
/// returns the soft limit now in force.
pub fn raise_nofile() -> u64 {
    let Ok((soft, hard)) = rlimit::getrlimit(Resource::NOFILE) else {
        return 1024;
    };
    if soft >= WANTED {
        return soft;
    }
    if hard < WANTED && rlimit::setrlimit(Resource::NOFILE, WANTED, WANTED).is_ok() {
        return WANTED;
    }
    let target = hard.min(WANTED);
    if rlimit::setrlimit(Resource::NOFILE, target, hard).is_ok() {
        target
    } else {
        soft
    }
}

/// A warning if `engines` in one process will not fit under `nofile` descriptors.
pub fn warning(engines_per_process: usize, nofile: u64) -> Option<String> {
    let wanted = 512 + FDS_PER_ENGINE * engines_per_process as u64;
    (wanted > nofile).then(|| {
        format!(
            "RLIMIT_NOFILE is {nofile}; {engines_per_process} engines per process want about \
             {wanted}: expect 'Too many open files' (use --processes)"
        )
    })
}
