//! Keeping large message buffers out of fresh `mmap`s.
//!
//! glibc serves every allocation above its mmap threshold (at most 32 MiB, by default adapting
//! from 128 KiB) with a fresh mapping and unmaps it on free, so each large message (libzmq
//! allocates received messages with malloc; Python allocates `bytes` with it) faults in every
//! page again. On the machines we measured, first-touching 100 MB costs 160-330 ms while
//! copying into memory already touched costs 10 ms: a 100 MB push paid that several times per
//! process. Raising the thresholds makes freed large blocks return to the heap and be reused, so
//! memory stays bounded by the largest messages in flight instead of growing per message.

/// Allocations up to this size come from the (reused) heap rather than fresh mappings.
pub const HEAP_UP_TO: usize = 1 << 30;

/// Applies [`HEAP_UP_TO`] to this process's glibc malloc (no-op elsewhere). Idempotent.
pub fn keep_large_buffers_on_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const M_TRIM_THRESHOLD: libc::c_int = -1;
        const M_MMAP_THRESHOLD: libc::c_int = -3;
        let v = HEAP_UP_TO as libc::c_int;
        // SAFETY: mallopt only changes malloc tunables; it is thread-safe and takes no pointers.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(M_MMAP_THRESHOLD, v);
            libc::mallopt(M_TRIM_THRESHOLD, v);
        }
    }
}
