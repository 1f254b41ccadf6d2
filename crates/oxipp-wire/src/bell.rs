//! [`Bell`]: wakes one thread sleeping in `poll`, and costs nothing when that thread is awake.
//!
//! A socket pair rather than an inproc ZeroMQ pair or a condvar: the sleeper polls it together
//! with the ZeroMQ sockets' file descriptors, and a ring is one `write` only when the sleeper
//! announced (with [`Bell::arm`]) that it is about to sleep. The hot paths (an engine's request
//! and reply, a client's send) then wake no thread that has nothing to do.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{fence, AtomicBool, Ordering};

pub struct Bell {
    rx: UnixStream,
    tx: UnixStream,
    armed: AtomicBool,
}

impl Bell {
    pub fn new() -> std::io::Result<Bell> {
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        Ok(Bell {
            rx,
            tx,
            armed: AtomicBool::new(false),
        })
    }

    /// The descriptor to poll for `POLLIN`.
    pub fn fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// [`Bell::fd`], borrowed (for safe `poll` wrappers).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }

    /// The owner is about to sleep: from now on [`Bell::ring`] writes. The owner must check
    /// for work *after* arming (a ring before it was a no-op) and before polling.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// The owner is awake again; `readable` = poll reported the descriptor readable.
    pub fn disarm(&self, readable: bool) {
        self.armed.store(false, Ordering::SeqCst);
        if readable {
            let mut buf = [0u8; 64];
            while matches!((&self.rx).read(&mut buf), Ok(n) if n > 0) {}
        }
    }

    /// Wakes the owner if it is (about to be) asleep. Call after making the work visible.
    pub fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.armed.swap(false, Ordering::SeqCst) {
            // a full pipe means a wake-up is pending anyway
            let _ = (&self.tx).write(&[1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_only_when_armed() {
        let b = Bell::new().unwrap();
        b.ring();
        let mut buf = [0u8; 4];
        assert!((&b.rx).read(&mut buf).is_err(), "unarmed ring wrote");
        b.arm();
        b.ring();
        assert_eq!((&b.rx).read(&mut buf).unwrap(), 1);
        b.ring(); // disarmed by the first ring
        assert!((&b.rx).read(&mut buf).is_err());
        b.arm();
        b.ring();
        b.disarm(true);
        assert!((&b.rx).read(&mut buf).is_err(), "disarm drains");
    }
}
