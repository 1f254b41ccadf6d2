//! Waking the reader of a big frame once per good part of it, not once per TCP segment.
//!
//! Why: reading each segment as soon as it lands (loopback delivers 64 KiB at a time) made a
//! process that relays 100 MB arrays (the controller) spend 2-5x more CPU per byte than
//! libzmq did, nearly all of it in the kernel's copy to user space, and halved push/pull
//! throughput: data read the moment the peer's core wrote it is slow to copy on this kind of
//! machine. While a big frame arrives, the socket's `SO_RCVLOWAT` is set to what is left of
//! it (at most [`LOWAT_MAX`]), so its descriptor reports input once that much is queued (or
//! at EOF/error); afterwards it is 1 again. Measured in `benches/push_relay.py`.
//!
//! Linux grows the receive buffer to fit a TCP `SO_RCVLOWAT` since 4.18; on older kernels a
//! low-water mark above the buffer could stall a connection, so it is not used there.

use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

/// The most a big frame's reader waits for before it is woken.
pub const LOWAT_MAX: usize = 1 << 20;

/// Whether this kernel sizes the receive buffer for `SO_RCVLOWAT` (Linux ≥ 4.18).
fn supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let uname = rustix::system::uname();
        let release = uname.release().to_string_lossy();
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        cfg!(target_os = "linux") && (major, minor) >= (4, 18)
    })
}

/// The low-water mark for a connection with `remaining` bytes of a big frame still to come
/// (`None`: no big frame in progress).
pub fn wanted(remaining: Option<usize>) -> usize {
    match remaining {
        Some(r) if supported() => r.clamp(1, LOWAT_MAX),
        _ => 1,
    }
}

/// Sets `SO_RCVLOWAT`; a failure only costs the optimisation.
pub fn set(stream: &TcpStream, bytes: usize) -> bool {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: `setsockopt` reads `size_of::<c_int>()` bytes from a pointer to a live c_int
    // on this stack frame, on a descriptor `stream` owns; it keeps no pointer afterwards.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_is_what_is_left_capped_and_one_between_frames() {
        assert_eq!(wanted(None), 1);
        if supported() {
            assert_eq!(wanted(Some(10)), 10);
            assert_eq!(wanted(Some(LOWAT_MAX * 3)), LOWAT_MAX);
            assert_eq!(wanted(Some(0)), 1);
        }
    }
}
