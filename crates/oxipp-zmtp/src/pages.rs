//! Keeping big receive buffers on small pages.
//!
//! Why: a big frame's buffer is fresh memory, and its first touch is most of what receiving
//! it costs. With transparent huge pages (which mimalloc, the oxipp binary's allocator, asks
//! for) each first touch zeroes a 2 MiB page that the kernel takes from its free 2 MiB
//! blocks; on the VMs we measured, those are the blocks whose host memory was handed back,
//! and touching 100 MB of them cost 250-340 ms of CPU against ~70 ms on 4 KiB pages
//! (`mmap` + `madvise` + one write per page, memory kept, eight 100 MB rounds). A controller
//! relaying 100 MB arrays spent 80% of its CPU there. Huge pages only win when recycled at
//! once, which the big-buffer pool ([`crate::bigbuf`]) does without them.

/// Buffers at least this big are advised onto small pages (smaller ones rarely span a
/// whole huge page).
const MIN_BYTES: usize = 4 << 20;

/// `madvise(advice)` over the whole pages inside `buf`: `Ok` if the kernel took it, `Err`
/// with its error if not (`None`: `buf` holds no whole page). Only for advice that keeps
/// the range's contents and keeps no pointer (how and when it is backed, nothing more):
/// `buf` is borrowed, not owned, so advice such as `MADV_DONTNEED` would be unsound here.
#[cfg(target_os = "linux")]
fn advise_whole_pages(buf: &[u8], advice: libc::c_int) -> Option<std::io::Result<()>> {
    // SAFETY: sysconf reads a constant of the system.
    #[allow(unsafe_code)]
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as usize,
        _ => return None,
    };
    let start = (buf.as_ptr() as usize).next_multiple_of(page);
    let end = (buf.as_ptr() as usize + buf.len()) / page * page;
    if end <= start {
        return None;
    }
    // SAFETY: [start, end) lies within `buf`, memory this process owns and maps, and the
    // advice keeps its contents (the callers pass MADV_NOHUGEPAGE / MADV_POPULATE_WRITE).
    #[allow(unsafe_code)]
    let r = unsafe { libc::madvise(start as *mut libc::c_void, end - start, advice) };
    Some(if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    })
}

/// Advises the kernel not to back `buf` with transparent huge pages, and says whether it
/// did. Best effort: on failure (a kernel without transparent huge pages refuses the advice,
/// and off Linux there is none) the buffer simply keeps the default.
pub fn small_pages(buf: &[u8]) -> bool {
    #[cfg(target_os = "linux")]
    {
        // MADV_NOHUGEPAGE only changes how future faults in the range are backed
        buf.len() >= MIN_BYTES
            && matches!(advise_whole_pages(buf, libc::MADV_NOHUGEPAGE), Some(Ok(())))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = buf;
        false
    }
}

/// Set once the kernel refused `MADV_POPULATE_WRITE` (before Linux 5.14): not asked again.
#[cfg(target_os = "linux")]
static NO_POPULATE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Backs the whole pages of `buf` with memory now, in one call (`MADV_POPULATE_WRITE`),
/// instead of one page fault each as a `read(2)` copies into them; says whether it did.
///
/// Why: a fresh receive buffer's pages are faulted in one by one while the kernel copies a
/// frame into it, ~25,000 faults per 100 MB. Faulting them in bulk took ~25% less CPU
/// (44 vs 60 ms per 100 MB, `mmap` + `madvise` + one write per page, eight rounds on the
/// VMs we measured). It only changes when the memory is provided, never its contents.
pub fn populate(buf: &mut [u8]) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::sync::atomic::Ordering;
        if NO_POPULATE.load(Ordering::Relaxed) {
            return false;
        }
        // MADV_POPULATE_WRITE only faults the pages in (as a write would), keeping their
        // contents
        match advise_whole_pages(buf, libc::MADV_POPULATE_WRITE) {
            Some(Ok(())) => true,
            Some(Err(e)) => {
                if e.raw_os_error() == Some(libc::EINVAL) {
                    NO_POPULATE.store(true, Ordering::Relaxed);
                }
                false
            }
            None => false,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = buf;
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
pub(crate) mod tests {
    use super::*;

    /// Field `name` (e.g. `VmFlags:`) of the mapping that holds `addr`, from
    /// /proc/self/smaps.
    fn smaps_field_at(addr: usize, name: &str) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((lo, hi)) = range.split_once('-') {
                    if let (Ok(lo), Ok(hi)) =
                        (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                    {
                        inside = (lo..hi).contains(&addr);
                        continue;
                    }
                }
            }
            if inside {
                if let Some(value) = line.strip_prefix(name) {
                    return value.to_string();
                }
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    fn vm_flags_at(addr: usize) -> String {
        smaps_field_at(addr, "VmFlags:")
    }

    /// Resident memory of the mapping that holds `addr`, in KiB.
    pub(crate) fn rss_kib_at(addr: usize) -> usize {
        let rss = smaps_field_at(addr, "Rss:");
        rss.trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .expect("Rss")
    }

    #[test]
    fn populating_backs_the_pages_and_keeps_the_contents() {
        let mut buf = vec![0u8; 32 << 20];
        buf[5] = 7;
        let addr = buf.as_ptr() as usize + (16 << 20);
        let before = rss_kib_at(addr);
        if !populate(&mut buf[..]) {
            assert!(
                NO_POPULATE.load(std::sync::atomic::Ordering::Relaxed),
                "populate failed"
            );
            eprintln!("skipped: this kernel has no MADV_POPULATE_WRITE");
            return;
        }
        let after = rss_kib_at(addr);
        assert!(after >= before + (30 << 10), "Rss {before} -> {after} KiB");
        assert_eq!(buf[5], 7);
        assert!(buf[6..].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_big_buffer_is_advised_off_huge_pages() {
        let buf = vec![0u8; 16 << 20];
        let middle = buf.as_ptr() as usize + buf.len() / 2;
        if !small_pages(&buf) {
            // only a kernel built without transparent huge pages may refuse the advice
            assert!(
                !std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists(),
                "madvise(MADV_NOHUGEPAGE) failed: {}",
                std::io::Error::last_os_error()
            );
            eprintln!("skipped: this kernel has no transparent huge pages");
            return;
        }
        let flags = vm_flags_at(middle);
        assert!(
            flags.split_whitespace().any(|f| f == "nh"),
            "VmFlags:{flags}"
        );
    }
}
