//! Waiting on several sockets at once with `poll(2)`.
//!
//! Owners with other descriptors to watch (libzmq sockets, pipes) can poll each
//! [`Socket`]'s descriptor themselves ([`std::os::fd::AsFd`]) and must then honour
//! [`Socket::has_pending`] and [`Socket::timeout`] as this function does.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};

use crate::Socket;

/// Waits until one of `sockets` has something to do, or `timeout` (`None`: forever) has
/// passed. Returns at once if one already has queued messages or events; never waits past
/// a socket's reconnect timer. Returns the number of sockets whose descriptor is ready
/// (0 on timeout). An interrupted wait (EINTR) counts as a timeout.
pub fn poll(sockets: &[&Socket], timeout: Option<Duration>) -> io::Result<usize> {
    if sockets.iter().any(|s| s.has_pending()) {
        return Ok(sockets.len());
    }
    let wait = sockets
        .iter()
        .filter_map(|s| s.timeout())
        .chain(timeout)
        .min();
    let mut fds: Vec<PollFd<'_>> = sockets
        .iter()
        .map(|s| PollFd::from_borrowed_fd(s.as_fd(), PollFlags::IN))
        .collect();
    let ts = wait.map(|d| Timespec {
        tv_sec: d.as_secs() as i64,
        tv_nsec: i64::from(d.subsec_nanos()),
    });
    match rustix::event::poll(&mut fds, ts.as_ref()) {
        Ok(n) => Ok(n),
        Err(rustix::io::Errno::INTR) => Ok(0),
        Err(e) => Err(e.into()),
    }
}
