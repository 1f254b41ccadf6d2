//! Recycled receive buffers for big frames.
//!
//! Why: a big frame's buffer is fresh memory, and first-touching it costs more than reading
//! the bytes from the socket (a page fault per page, the kernel zeroing each one). An
//! allocator that hands huge blocks back to the kernel at once (mimalloc, which the oxipp
//! binary uses) makes every big message pay that again: relaying 100 MB arrays, the
//! controller spent more CPU in page faults and buffer growth than in copying. So a big
//! frame's buffer comes back here when the last `Bytes` of it is dropped, and the next big
//! frame that fits reuses it, pages already mapped. The pool is bounded ([`MAX_BUFFERS`],
//! [`MAX_BYTES`]): what does not fit is freed as before.
//!
//! A reused buffer may be larger than the frame and hold an older frame's bytes; the
//! decoder exposes only the frame's own length, and only once all of it was received.

use std::sync::Mutex;

use bytes::Bytes;

/// Buffers kept for reuse, at most.
const MAX_BUFFERS: usize = 4;
/// Bytes kept for reuse, at most (the same bound oxipp puts on glibc's heap trimming).
const MAX_BYTES: usize = 1 << 30;

/// Idle big-frame buffers.
pub(crate) struct Pool {
    idle: Mutex<Vec<Vec<u8>>>,
}

/// The process's pool, shared by every socket.
pub(crate) static POOL: Pool = Pool::new();

impl Pool {
    pub(crate) const fn new() -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The smallest idle buffer of at least `size` bytes, if any.
    pub(crate) fn take(&self, size: usize) -> Option<Vec<u8>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let i = (0..idle.len())
            .filter(|&i| idle[i].len() >= size)
            .min_by_key(|&i| idle[i].len())?;
        Some(idle.swap_remove(i))
    }

    /// The first `len` bytes of `buf` as `Bytes`; `buf` returns to this pool when the last
    /// reference is dropped.
    pub(crate) fn wrap(&'static self, buf: Vec<u8>, len: usize) -> Bytes {
        let len = len.min(buf.len());
        Bytes::from_owner(Recycled {
            buf,
            len,
            pool: self,
        })
    }

    fn give_back(&self, buf: Vec<u8>) {
        if buf.len() > MAX_BYTES {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // the oldest make room for the newest
        while !idle.is_empty()
            && (idle.len() >= MAX_BUFFERS
                || idle.iter().map(Vec::len).sum::<usize>() + buf.len() > MAX_BYTES)
        {
            idle.remove(0);
        }
        idle.push(buf);
    }

    #[cfg(test)]
    fn idle_lens(&self) -> Vec<usize> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.iter().map(Vec::len).collect()
    }
}

/// A received frame's buffer, owned by its `Bytes`.
struct Recycled {
    buf: Vec<u8>,
    len: usize,
    pool: &'static Pool,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> &'static Pool {
        Box::leak(Box::new(Pool::new()))
    }

    #[test]
    fn a_dropped_frame_buffer_is_reused_by_the_next_that_fits() {
        let pool = pool();
        let bytes = pool.wrap(vec![7u8; 1000], 900);
        assert_eq!(bytes.len(), 900);
        let addr = bytes.as_ptr();
        let clone = bytes.slice(10..20);
        drop(bytes);
        assert!(pool.take(1).is_none(), "still referenced by the slice");
        drop(clone);
        assert!(pool.take(1001).is_none(), "too small for 1001 bytes");
        let again = pool.take(500).expect("reused");
        assert_eq!(again.as_ptr(), addr);
        assert_eq!(again.len(), 1000);
    }

    #[test]
    fn the_smallest_fitting_buffer_is_taken() {
        let pool = pool();
        for n in [300, 100, 200] {
            drop(pool.wrap(vec![0; n], n));
        }
        assert_eq!(pool.take(150).map(|b| b.len()), Some(200));
        assert_eq!(pool.idle_lens(), vec![300, 100]);
    }

    #[test]
    fn the_pool_is_bounded_and_keeps_the_newest() {
        let pool = pool();
        for n in 1..=MAX_BUFFERS + 2 {
            drop(pool.wrap(vec![0; n], n));
        }
        let kept: Vec<usize> = (3..=MAX_BUFFERS + 2).collect();
        assert_eq!(pool.idle_lens(), kept);
        drop(pool.wrap(vec![0; MAX_BYTES], 1));
        assert_eq!(pool.idle_lens(), vec![MAX_BYTES], "older buffers make room");
        drop(pool.wrap(vec![0; MAX_BYTES + 1], 1));
        assert_eq!(pool.idle_lens(), vec![MAX_BYTES], "too big to keep");
    }
}
