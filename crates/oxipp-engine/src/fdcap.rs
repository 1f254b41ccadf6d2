//! Output written to file descriptors 1 and 2 directly (`os.system`, subprocesses, C extensions'
//! `printf`, `os.write(1, …)`) becomes IOPub `stream` output, as stock engines' `watchfd` does.
//!
//! At start each captured descriptor is duplicated (the *original*, kept for the process's
//! lifetime: the engine's own logs go there, see [`log_fd`]) and replaced by the write end of a
//! pipe. A Rust thread (no Python, no GIL) reads the pipes and hands the text to a [`Sink`]
//! (in the engine: the same per-request stream buffer `EngineRuntime.stream` fills, parent =
//! the running or last request). UTF-8 is decoded across reads ([`Utf8Decoder`]).
//!
//! Boundaries: [`FdCapture::drain`] reads whatever is in the pipes *now*, non-blocking, under the
//! same lock the reader thread reads under (so nothing is reordered). The runtime calls it before
//! each reply, each IOPub publish and each Python `stream` write: output a task wrote to the
//! descriptors before it returned (or before it printed) is in the pipe by then, so it goes out
//! first. [`FdCapture::stop`] puts the original descriptors back and drains what is left; it
//! never waits for end-of-file, so a child process that keeps the pipe open cannot hang it.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::bell::Bell;

/// Where the engine's own logs go: the original stderr while fd 2 is captured, else fd 2.
static LOG_FD: AtomicI32 = AtomicI32::new(2);

/// The descriptor the engine's own log lines are written to (Rust tracing, panics): the original
/// stderr while fd 2 is captured (so logs reach the engine's log file, never IOPub), else 2.
pub fn log_fd() -> RawFd {
    LOG_FD.load(Ordering::Relaxed)
}

/// An [`std::io::Write`] on [`log_fd`] (for `tracing_subscriber`'s `with_writer`).
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        write_fd(log_fd(), buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[allow(unsafe_code)]
fn write_fd(fd: RawFd, buf: &[u8]) -> std::io::Result<usize> {
    loop {
        // SAFETY: writing from a valid slice to a descriptor number; a bad number is EBADF
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn write_all_fd(fd: RawFd, mut buf: &[u8]) {
    while !buf.is_empty() {
        match write_fd(fd, buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf = &buf[n..],
        }
    }
}

/// Rust panic messages (the engine's own) go to [`log_fd`] like its logs, not into the pipe.
fn panics_to_log_fd() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if log_fd() == 2 {
                return default(info);
            }
            let thread = std::thread::current();
            let mut msg = format!(
                "thread '{}' panicked at {info}\n",
                thread.name().unwrap_or("<unnamed>")
            );
            let bt = std::backtrace::Backtrace::capture();
            if bt.status() == std::backtrace::BacktraceStatus::Captured {
                msg.push_str(&format!("{bt}\n"));
            }
            write_all_fd(log_fd(), msg.as_bytes());
        }));
    });
}

/// Where captured text goes.
pub trait Sink: Send + Sync {
    /// `name` is the stream name given to [`FdCapture::start`] (`stdout`, `stderr`).
    fn push(&self, name: &str, text: &str);
    /// `false` once text can no longer reach clients: [`FdCapture::stop`] then writes what is
    /// left to the original descriptors instead.
    fn accepting(&self) -> bool {
        true
    }
}

/// Decodes UTF-8 that arrives in arbitrary pieces: a character split between two reads is
/// completed by the next one instead of becoming two replacement characters. Invalid bytes
/// become U+FFFD.
#[derive(Default)]
pub struct Utf8Decoder {
    /// The start of an incomplete character at the end of the last piece (at most 3 bytes).
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// Appends the text of `input` to `out`, keeping an incomplete trailing character back.
    pub fn decode(&mut self, input: &[u8], out: &mut String) {
        let joined;
        let mut rest: &[u8] = if self.pending.is_empty() {
            input
        } else {
            let mut v = std::mem::take(&mut self.pending);
            v.extend_from_slice(input);
            joined = v;
            &joined
        };
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    return;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        None => {
                            self.pending = after.to_vec();
                            return;
                        }
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                    }
                }
            }
        }
    }

    /// Ends the input: an incomplete character left over becomes U+FFFD.
    pub fn finish(&mut self, out: &mut String) {
        if !self.pending.is_empty() {
            self.pending.clear();
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

/// The read size; also how much a drain takes from one pipe in one go before it looks whether
/// the pipe is empty.
const CHUNK: usize = 64 * 1024;

/// The most one [`FdCapture::drain`] reads from one pipe: a child writing without pause cannot
/// keep a reply waiting.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;

struct Pipe {
    name: &'static str,
    /// The captured descriptor (1, 2).
    target: RawFd,
    /// Its duplicate: what `target` was before (never closed, see [`FdCapture`]).
    original: RawFd,
    /// The read end (owned by `state`), for `poll`.
    read_fd: RawFd,
    state: Mutex<PipeState>,
}

struct PipeState {
    read: OwnedFd,
    /// Read buffer ([`CHUNK`] bytes once the pipe had data).
    buf: Vec<u8>,
    decoder: Utf8Decoder,
    /// End of file seen (every write end closed).
    eof: bool,
}

/// Descriptors redirected into pipes, and the thread that reads them.
///
/// The duplicates of the original descriptors are never closed: log writers and the Python
/// streams built on them (`EngineRuntime.original_fds`) may use them until the process exits.
pub struct FdCapture {
    pipes: Vec<Pipe>,
    /// Set by [`FdCapture::stop`]; the reader thread then ends.
    stopped: AtomicBool,
    wake: Bell,
    reader: Mutex<Option<JoinHandle<()>>>,
}

fn errno<T>(what: &str) -> std::io::Result<T> {
    let e = std::io::Error::last_os_error();
    Err(std::io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// `fd` duplicated to a number above 2, close-on-exec (children must not inherit it).
#[allow(unsafe_code)]
fn dup_high(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: fcntl on a descriptor number; failure is reported through errno
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return errno("dup");
    }
    // SAFETY: `new` is a fresh descriptor we own
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// `read(2)` into `buf`: bytes read, 0 at end of file, -1 with errno set.
#[allow(unsafe_code)]
fn read_fd(fd: RawFd, buf: &mut [u8]) -> isize {
    // SAFETY: reading into a valid, writable slice of its own length
    unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }
}

/// `poll(2)` (`timeout_ms` -1: none): the number of ready items, or -1 (EINTR).
#[allow(unsafe_code)]
fn poll(items: &mut [libc::pollfd], timeout_ms: libc::c_int) -> libc::c_int {
    // SAFETY: poll on a valid array of its own length
    unsafe { libc::poll(items.as_mut_ptr(), items.len() as libc::nfds_t, timeout_ms) }
}

fn dev_null() -> std::io::Result<OwnedFd> {
    let f = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    dup_high(f.as_raw_fd())
}

/// A pipe: (read end, non-blocking; write end), both close-on-exec and above 2.
#[allow(unsafe_code)]
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe fills the two-element array (pipe2 would save the dups below, but macOS
    // lacks it; nothing forks while an engine starts)
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return errno("pipe");
    }
    // SAFETY: both are fresh descriptors we own
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // close-on-exec, and above 2 in case 0-2 were closed (pipe takes the lowest free numbers)
    let (r, w) = (dup_high(r.as_raw_fd())?, dup_high(w.as_raw_fd())?);
    // SAFETY: fcntl on our own descriptor
    unsafe {
        let fl = libc::fcntl(r.as_raw_fd(), libc::F_GETFL);
        if fl < 0 || libc::fcntl(r.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
            return errno("pipe O_NONBLOCK");
        }
    }
    Ok((r, w))
}

#[allow(unsafe_code)]
fn dup2(from: RawFd, to: RawFd) -> std::io::Result<()> {
    loop {
        // SAFETY: dup2 on descriptor numbers; the new `to` is not close-on-exec (children
        // inherit it, which is the point)
        if unsafe { libc::dup2(from, to) } >= 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl FdCapture {
    /// Replaces each `(fd, name)` by a pipe whose text is `name`'s stream. No thread reads the
    /// pipes until [`FdCapture::spawn_reader`]. When `fd` 2 is captured, [`log_fd`] becomes its
    /// original. All or nothing: on error the descriptors are left as they were.
    pub fn start(targets: &[(RawFd, &'static str)]) -> std::io::Result<FdCapture> {
        let wake = Bell::new()?;
        let mut prepared = Vec::new();
        for &(target, name) in targets {
            // a closed descriptor (daemons) gets /dev/null as its "original"
            let original = match dup_high(target) {
                Ok(fd) => fd,
                Err(_) => dev_null()?,
            };
            let (read, write) = pipe()?;
            prepared.push((target, name, original, read, write));
        }
        let mut pipes = Vec::new();
        for (i, (target, name, original, read, write)) in prepared.into_iter().enumerate() {
            if let Err(e) = dup2(write.as_raw_fd(), target) {
                for p in &pipes[..i] {
                    let p: &Pipe = p;
                    let _ = dup2(p.original, p.target);
                }
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("redirect fd {target}: {e}"),
                ));
            }
            drop(write); // `target` is now the pipe's only write end (besides children's)
            pipes.push(Pipe {
                name,
                target,
                original: std::mem::ManuallyDrop::new(original).as_raw_fd(),
                read_fd: read.as_raw_fd(),
                state: Mutex::new(PipeState {
                    read,
                    buf: Vec::new(),
                    decoder: Utf8Decoder::default(),
                    eof: false,
                }),
            });
        }
        if let Some(p) = pipes.iter().find(|p| p.target == 2) {
            LOG_FD.store(p.original, Ordering::SeqCst);
            panics_to_log_fd();
        }
        Ok(FdCapture {
            pipes,
            stopped: AtomicBool::new(false),
            wake,
            reader: Mutex::new(None),
        })
    }

    /// The originals of the captured descriptors, in the order given to `start`.
    pub fn originals(&self) -> Vec<RawFd> {
        self.pipes.iter().map(|p| p.original).collect()
    }

    /// Starts the thread that reads the pipes into `sink` until [`FdCapture::stop`].
    pub fn spawn_reader(self: &Arc<Self>, sink: Arc<dyn Sink>) -> std::io::Result<()> {
        let me = self.clone();
        let t = std::thread::Builder::new()
            .name("oxipp-engine-fd".into())
            .spawn(move || me.read_until_stopped(&*sink))?;
        *self.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
        Ok(())
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, PipeState> {
        self.pipes[i]
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Reads what pipe `i` holds now (up to `limit` bytes) and hands its text to `sink`, all
    /// under the pipe's lock (so the reader thread and drains cannot reorder text). Returns
    /// `false` when the pipe is at end of file.
    fn read_pipe(&self, i: usize, sink: &dyn Sink, limit: usize) -> bool {
        let mut guard = self.lock(i);
        self.read_locked(i, &mut guard, sink, limit)
    }

    /// [`FdCapture::read_pipe`] with the pipe's lock held by the caller.
    fn read_locked(&self, i: usize, st: &mut PipeState, sink: &dyn Sink, limit: usize) -> bool {
        let pipe = &self.pipes[i];
        if st.eof {
            return false;
        }
        if st.buf.is_empty() {
            st.buf = vec![0u8; CHUNK];
        }
        let mut text = String::new();
        let mut total = 0;
        while total < limit {
            let n = read_fd(st.read.as_raw_fd(), &mut st.buf);
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                break; // EAGAIN: empty
            }
            if n == 0 {
                st.eof = true;
                st.decoder.finish(&mut text);
                break;
            }
            let n = n as usize;
            st.decoder.decode(&st.buf[..n], &mut text);
            total += n;
            if n < st.buf.len() {
                break; // a short read: the pipe was empty at that moment
            }
        }
        if !text.is_empty() {
            sink.push(pipe.name, &text);
        }
        !st.eof
    }

    /// Hands everything the pipes hold now to `sink` (non-blocking). One `poll` finds the
    /// pipes with data, so a drain of empty pipes costs one system call. The pipes' locks are
    /// taken first: a pipe the reader thread has just emptied may hold text it has not handed
    /// to the sink yet, and that text must be in the sink when this returns.
    pub fn drain(&self, sink: &dyn Sink) {
        let mut guards: Vec<MutexGuard<'_, PipeState>> =
            (0..self.pipes.len()).map(|i| self.lock(i)).collect();
        let mut items: Vec<libc::pollfd> = self
            .pipes
            .iter()
            .map(|p| libc::pollfd {
                fd: p.read_fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        loop {
            match poll(&mut items, 0) {
                0 => return,
                r if r > 0 => break,
                _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
                _ => return,
            }
        }
        for (i, item) in items.iter().enumerate() {
            if item.revents != 0 {
                self.read_locked(i, &mut guards[i], sink, DRAIN_LIMIT);
            }
        }
    }

    /// The reader thread's loop: sleeps in `poll` until a pipe has data or `stop` rings.
    pub fn read_until_stopped(&self, sink: &dyn Sink) {
        let mut open: Vec<bool> = vec![true; self.pipes.len()];
        loop {
            self.wake.arm();
            if self.stopped.load(Ordering::SeqCst) {
                return;
            }
            let mut items = vec![libc::pollfd {
                fd: self.wake.fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            let mut which = Vec::new();
            for (i, p) in self.pipes.iter().enumerate() {
                if open[i] {
                    items.push(libc::pollfd {
                        fd: p.read_fd,
                        events: libc::POLLIN,
                        revents: 0,
                    });
                    which.push(i);
                }
            }
            let r = poll(&mut items, -1);
            self.wake.disarm(r > 0 && items[0].revents != 0);
            if r <= 0 {
                continue; // EINTR
            }
            for (k, &i) in which.iter().enumerate() {
                if items[k + 1].revents != 0 {
                    open[i] = self.read_pipe(i, sink, CHUNK * 16);
                }
            }
        }
    }

    /// Puts the original descriptors back, stops the reader thread and hands what is left in
    /// the pipes to `sink` (or, when it no longer accepts, writes it to the originals).
    /// Idempotent. Never waits for end of file: children may keep the pipes open.
    pub fn stop(&self, sink: &dyn Sink) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        for p in &self.pipes {
            if let Err(e) = dup2(p.original, p.target) {
                tracing::warn!("restoring fd {}: {e}", p.target);
            }
        }
        self.wake.ring();
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = reader {
            let _ = t.join();
        }
        if sink.accepting() {
            self.drain(sink);
            for i in 0..self.pipes.len() {
                let mut text = String::new();
                self.lock(i).decoder.finish(&mut text);
                if !text.is_empty() {
                    sink.push(self.pipes[i].name, &text);
                }
            }
        } else {
            self.drain(&ToOriginals(self));
        }
    }

    /// Like [`FdCapture::stop`], for when the process is about to exit without a client to
    /// send to: what is left goes to the original descriptors.
    pub fn stop_to_originals(&self) {
        struct Refuse;
        impl Sink for Refuse {
            fn push(&self, _: &str, _: &str) {}
            fn accepting(&self) -> bool {
                false
            }
        }
        self.stop(&Refuse);
    }
}

/// Writes drained text back to where the descriptors originally went.
struct ToOriginals<'a>(&'a FdCapture);

impl Sink for ToOriginals<'_> {
    fn push(&self, name: &str, text: &str) {
        if let Some(p) = self.0.pipes.iter().find(|p| p.name == name) {
            write_all_fd(p.original, text.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::time::{Duration, Instant};

    #[derive(Default)]
    struct Recorder {
        got: Mutex<Vec<(String, String)>>,
        closed: AtomicBool,
    }

    impl Sink for Recorder {
        fn push(&self, name: &str, text: &str) {
            self.got
                .lock()
                .unwrap()
                .push((name.to_string(), text.to_string()));
        }
        fn accepting(&self) -> bool {
            !self.closed.load(Ordering::SeqCst)
        }
    }

    impl Recorder {
        fn text(&self, name: &str) -> String {
            let got = self.got.lock().unwrap();
            got.iter()
                .filter(|(n, _)| n == name)
                .map(|(_, t)| t.as_str())
                .collect()
        }
    }

    fn decode_pieces(pieces: &[&[u8]]) -> String {
        let mut d = Utf8Decoder::default();
        let mut out = String::new();
        for p in pieces {
            d.decode(p, &mut out);
        }
        d.finish(&mut out);
        out
    }

    #[test]
    fn decoder_joins_characters_split_between_reads() {
        let text = "aé€😀z";
        let bytes = text.as_bytes();
        for cut in 0..=bytes.len() {
            assert_eq!(
                decode_pieces(&[&bytes[..cut], &bytes[cut..]]),
                text,
                "cut {cut}"
            );
        }
        // one byte at a time
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode_pieces(&singles), text);
    }

    #[test]
    fn decoder_replaces_invalid_bytes_and_a_truncated_end() {
        assert_eq!(decode_pieces(&[b"a\xffb"]), "a\u{fffd}b");
        assert_eq!(decode_pieces(&[b"a\xe2\x82"]), "a\u{fffd}");
        assert_eq!(decode_pieces(&[b"\xe2\x82", b"x"]), "\u{fffd}x");
    }

    /// A descriptor of our own to capture (capturing 1/2 would take the test harness's output).
    fn target() -> (File, RawFd) {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap();
        let fd = f.as_raw_fd();
        (f, fd)
    }

    fn write_to(fd: RawFd, b: &[u8]) {
        write_all_fd(fd, b);
    }

    #[test]
    fn drain_takes_what_was_written_and_stop_restores_the_descriptor() {
        let (_f, fd) = target();
        let before = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let cap = FdCapture::start(&[(fd, "stdout")]).unwrap();
        assert_ne!(
            std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap(),
            before
        );
        let rec = Recorder::default();
        write_to(fd, "x€".as_bytes());
        cap.drain(&rec); // no reader thread: the drain alone must see it
        assert_eq!(rec.text("stdout"), "x€");
        write_to(fd, b"tail");
        cap.stop(&rec);
        assert_eq!(rec.text("stdout"), "x€tail");
        assert_eq!(
            std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap(),
            before
        );
        cap.stop(&rec); // idempotent
        assert_ne!(log_fd(), cap.originals()[0], "only fd 2 moves the log");
    }

    #[test]
    fn reader_thread_forwards_large_writes_whole() {
        let (_f, fd) = target();
        let cap = Arc::new(FdCapture::start(&[(fd, "stderr")]).unwrap());
        let rec = Arc::new(Recorder::default());
        cap.spawn_reader(rec.clone()).unwrap();
        let big: String = (0..(1 << 20))
            .map(|i| (b'a' + (i % 26) as u8) as char)
            .collect();
        write_to(fd, big.as_bytes()); // 16 pipe-fulls: only a running reader lets this finish
        cap.drain(&*rec);
        assert_eq!(rec.text("stderr"), big);
        cap.stop(&*rec);
    }

    #[test]
    fn stop_does_not_wait_for_a_child_holding_the_pipe() {
        let (_f, fd) = target();
        let cap = Arc::new(FdCapture::start(&[(fd, "stdout")]).unwrap());
        let rec = Arc::new(Recorder::default());
        cap.spawn_reader(rec.clone()).unwrap();
        // a second write end, as a child process that outlives the engine would hold
        let child_end = dup_high(fd).unwrap();
        write_to(child_end.as_raw_fd(), b"from child\n");
        let t = Instant::now();
        cap.stop(&*rec);
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(rec.text("stdout"), "from child\n");
    }

    #[test]
    fn after_the_last_flush_what_is_left_goes_to_the_original() {
        let dir = std::env::temp_dir().join(format!("oxipp-fdcap-{}", std::process::id()));
        let f = File::create(&dir).unwrap();
        let fd = f.as_raw_fd();
        let cap = FdCapture::start(&[(fd, "stdout")]).unwrap();
        write_to(fd, b"late output");
        let rec = Recorder::default();
        rec.closed.store(true, Ordering::SeqCst);
        cap.stop(&rec);
        assert_eq!(rec.text("stdout"), "");
        assert_eq!(std::fs::read_to_string(&dir).unwrap(), "late output");
        let _ = std::fs::remove_file(&dir);
    }
}
