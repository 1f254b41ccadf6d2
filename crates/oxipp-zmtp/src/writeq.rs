//! A connection's outgoing bytes, written with one `writev(2)` for many queued messages.
//!
//! Small frames (header and body) are appended to a staging buffer: many small messages
//! become one contiguous slice. A big frame's body ([`ZERO_COPY_MIN`] or more) is kept as
//! the caller's own `Bytes` and becomes its own `writev` slice, so it is never copied in
//! user space.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::{put_header, FLAG_MORE, ZERO_COPY_MIN};

/// Slices per `writev` call (well under Linux's IOV_MAX of 1024).
const MAX_IOV: usize = 64;

/// Outgoing bytes of one connection.
#[derive(Debug, Default)]
pub struct WriteQueue {
    /// Sealed chunks, oldest first; the front one may be partly written already.
    chunks: VecDeque<Bytes>,
    /// Small frames not yet sealed into a chunk.
    staging: BytesMut,
    /// Bytes queued (chunks + staging), for [`WriteQueue::len`].
    queued: usize,
}

impl WriteQueue {
    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.queued
    }

    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Queues raw protocol bytes (greeting, commands).
    pub fn push_raw(&mut self, b: &[u8]) {
        self.staging.put_slice(b);
        self.queued += b.len();
    }

    /// Queues the frames of one message (MORE set on all but the last).
    pub fn push_message(&mut self, frames: &[Bytes]) {
        let n = frames.len();
        for (i, f) in frames.iter().enumerate() {
            let flags = if i + 1 < n { FLAG_MORE } else { 0 };
            self.push_frame(flags, f);
        }
    }

    /// Queues one frame with the given flags.
    pub fn push_frame(&mut self, flags: u8, body: &Bytes) {
        let before = self.staging.len();
        put_header(&mut self.staging, flags, body.len());
        self.queued += self.staging.len() - before + body.len();
        if body.len() >= ZERO_COPY_MIN {
            self.seal();
            self.chunks.push_back(body.clone());
        } else {
            self.staging.put_slice(body);
        }
    }

    fn seal(&mut self) {
        if !self.staging.is_empty() {
            self.chunks.push_back(self.staging.split().freeze());
        }
    }

    /// Writes as much as `w` takes. `Ok(true)`: everything was written; `Ok(false)`: the
    /// kernel's buffer is full (`WouldBlock`), the rest stays queued.
    pub fn write_to<W: Write>(&mut self, w: &mut W) -> io::Result<bool> {
        self.seal();
        while !self.chunks.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut k = 0;
            for c in self.chunks.iter().take(MAX_IOV) {
                iov[k] = IoSlice::new(c);
                k += 1;
            }
            let res = if k == 1 {
                w.write(&self.chunks[0])
            } else {
                w.write_vectored(&iov[..k])
            };
            match res {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn advance(&mut self, mut n: usize) {
        self.queued -= n;
        while n > 0 {
            let front = self.chunks.front_mut().expect("wrote more than queued");
            if n >= front.len() {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                *front = front.slice(n..);
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `cap` bytes per call, then refuses with WouldBlock.
    struct Trickle {
        out: Vec<u8>,
        cap: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.calls == 3 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls += 1;
            let n = b.len().min(self.cap);
            self.out.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let mut q = WriteQueue::default();
        let big = Bytes::from(vec![9u8; ZERO_COPY_MIN]);
        q.push_message(&[
            Bytes::from_static(b"a"),
            big.clone(),
            Bytes::from_static(b"bc"),
        ]);
        let total = q.len();
        let mut w = Trickle {
            out: Vec::new(),
            cap: 1000,
            calls: 0,
        };
        assert!(!q.write_to(&mut w).unwrap());
        assert_eq!(q.len(), total - w.out.len());
        assert!(w.out.len() > 1000, "resumed within and across chunks");
        let mut rest = Trickle {
            out: w.out,
            cap: usize::MAX,
            calls: 0,
        };
        assert!(q.write_to(&mut rest).unwrap());
        assert_eq!(rest.out.len(), total);
        assert_eq!(&rest.out[..3], &[FLAG_MORE, 1, b'a']);
        assert_eq!(&rest.out[total - 4..], &[0, 2, b'b', b'c']);
    }
}
