//! Process limits a large simulated fleet runs into.
//!
//! Each simulated engine's sockets are [`oxipp_zmtp`] sockets: one epoll descriptor per socket
//! plus one descriptor per TCP connection. A registered engine holds six (its shell ROUTER:
//! epoll + connections to mux, task and a broadcast leaf; its heart DEALER: epoll + one
//! connection to the pong port). A registering one holds four: the registration DEALER
//! (epoll + one connection, closed once registered) and the epolls of its shell and heart,
//! made in advance (see `fleet::worker`). A heart-only engine
//! ([`crate::fleet::FleetOptions::heart_only`]) holds three while registering and two once
//! registered. Each worker thread adds a few of its own (the ping SUB, its epoll instance),
//! counted in the fleet's reserve. So 5,000 full engines need ~30,000 descriptors, above
//! common hard limits (20,000 in this project's sandbox, which also lacks CAP_SYS_RESOURCE to
//! raise it). The fleet is split over processes when one is not enough (see
//! `fleet::default_processes`).

use rlimit::Resource;

/// Descriptors held per simulated engine, at most (see the module comment).
pub const FDS_PER_ENGINE: u64 = 6;
/// ... per heart-only engine (while it registers; two afterwards).
pub const FDS_PER_HEART_ONLY_ENGINE: u64 = 3;

/// Descriptors budgeted per engine of a fleet.
pub fn fds_per_engine(heart_only: bool) -> u64 {
    if heart_only {
        FDS_PER_HEART_ONLY_ENGINE
    } else {
        FDS_PER_ENGINE
    }
}
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
pub fn warning(engines_per_process: usize, heart_only: bool, nofile: u64) -> Option<String> {
    let wanted = 512 + fds_per_engine(heart_only) * engines_per_process as u64;
    (wanted > nofile).then(|| {
        format!(
            "RLIMIT_NOFILE is {nofile}; {engines_per_process} engines per process want about \
             {wanted}: expect 'Too many open files' (use --processes)"
        )
    })
}
