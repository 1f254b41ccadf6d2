//! ZMTP 3.x framing (RFC 23/37): the greeting, frame headers, commands and their metadata.
//!
//! Everything here is pure (no IO) so it can be tested byte for byte and fuzzed: the
//! [`Decoder`] turns any split of a byte stream into the same frames, and never panics on
//! hostile input (sizes are checked against the configured maximum before anything is
//! allocated, and a big frame's buffer costs memory only as its bytes arrive, see
//! [`BIG_FALLBACK_INITIAL`]).

use bytes::{BufMut, Bytes, BytesMut};

/// Size of the ZMTP 3 greeting, sent and expected once per connection before any frame.
pub const GREETING_LEN: usize = 64;

/// Frame flag bits (RFC 23 §"Framing").
pub const FLAG_MORE: u8 = 0x01;
/// The size field is 8 bytes (network order) instead of 1.
pub const FLAG_LONG: u8 = 0x02;
/// The frame is a command (READY, PING, SUBSCRIBE, ERROR, ...), not message data.
pub const FLAG_COMMAND: u8 = 0x04;

/// Frames at least this large are received straight into their own buffer (the kernel
/// copies into the final `Bytes`, we never do) and sent as their own `writev` slice from
/// the caller's `Bytes` (no copy into the write buffer). Smaller frames are copied once:
/// cheaper than the bookkeeping.
pub const ZERO_COPY_MIN: usize = 64 * 1024;

/// A big frame's buffer is allocated up front, zeroed by the allocator: fresh pages from
/// the kernel are zero already, so they cost nothing until the frame's bytes are read into
/// them, and a peer that merely *declares* an enormous frame reserves address space, not
/// memory. Only when that allocation fails (more than the kernel will map) does the buffer
/// start at this size and grow as the bytes actually arrive. Growing is the slow path: each
/// doubling copies what arrived into fresh memory and zero-fills the rest, so a 100 MB frame
/// touched 164 MB of fresh pages and copied 64 MB (most of the controller's CPU relaying
/// arrays, whose fresh pages are expensive on a VM).
const BIG_FALLBACK_INITIAL: usize = 64 << 20;

/// A zeroed buffer of `size` bytes, or `None` if the allocator cannot provide one.
fn zeroed_buffer(size: usize) -> Option<Vec<u8>> {
    if size == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u8>(size).ok()?;
    // SAFETY: `layout` has a non-zero size (checked above). A non-null result is a block
    // of `size` zeroed bytes from the global allocator with `u8`'s alignment, which is
    // exactly what `Vec<u8>` with capacity and length `size` owns and later frees.
    #[allow(unsafe_code)]
    let buf = unsafe {
        let ptr = std::alloc::alloc_zeroed(layout);
        (!ptr.is_null()).then(|| Vec::from_raw_parts(ptr, size, size))
    }?;
    crate::pages::small_pages(&buf);
    Some(buf)
}

/// Builds our 64-byte greeting: signature, version 3.1, mechanism NULL, as-server 0.
///
/// With NULL security the as-server bit is ignored by both sides, so we always send 0.
pub fn greeting() -> [u8; GREETING_LEN] {
    let mut g = [0u8; GREETING_LEN];
    g[0] = 0xFF;
    g[9] = 0x7F;
    g[10] = 3; // major
    g[11] = 1; // minor: 3.1 (libzmq 4.3 sends 3.1 too)
    g[12..16].copy_from_slice(b"NULL");
    g
}

/// What the peer's greeting told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerGreeting {
    pub major: u8,
    pub minor: u8,
}

/// Checks a peer's 64-byte greeting. We speak ZMTP 3.x with the NULL mechanism only; an
/// older (ZMTP 1.0/2.0) peer, another mechanism or a non-ZMTP stream is refused.
pub fn parse_greeting(g: &[u8]) -> Result<PeerGreeting, ProtocolError> {
    if g.len() < GREETING_LEN {
        return Err(ProtocolError::BadGreeting("short greeting"));
    }
    if g[0] != 0xFF || g[9] & 0x01 != 0x01 {
        return Err(ProtocolError::BadGreeting("bad signature"));
    }
    let (major, minor) = (g[10], g[11]);
    if major < 3 {
        return Err(ProtocolError::BadGreeting("ZMTP version < 3"));
    }
    let mech = &g[12..32];
    let name_len = mech.iter().position(|&b| b == 0).unwrap_or(mech.len());
    if &mech[..name_len] != b"NULL" || mech[name_len..].iter().any(|&b| b != 0) {
        return Err(ProtocolError::BadMechanism);
    }
    Ok(PeerGreeting { major, minor })
}

/// Why a connection was dropped for bad input. Counted per socket
/// ([`crate::Stats::protocol_errors`]); never a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    BadGreeting(&'static str),
    BadMechanism,
    /// A frame declared more bytes than the socket's `max_msg_size`.
    FrameTooLarge(u64),
    /// A malformed command (READY, SUBSCRIBE, ...).
    BadCommand(&'static str),
    /// The first command after the greeting was not READY, or a message came before it.
    ExpectedReady,
    /// The peer's `Socket-Type` cannot talk to ours (e.g. PUB to ROUTER).
    IncompatibleSocketType(String),
    /// The peer sent an ERROR command (its reason).
    PeerError(String),
    /// No complete greeting + READY within [`crate::Options::handshake_timeout`].
    HandshakeTimeout,
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadGreeting(why) => write!(f, "bad greeting: {why}"),
            Self::BadMechanism => write!(f, "security mechanism is not NULL"),
            Self::FrameTooLarge(n) => write!(f, "frame of {n} bytes exceeds max_msg_size"),
            Self::BadCommand(why) => write!(f, "bad command: {why}"),
            Self::ExpectedReady => write!(f, "expected READY"),
            Self::IncompatibleSocketType(t) => write!(f, "incompatible peer socket type {t:?}"),
            Self::PeerError(r) => write!(f, "peer sent ERROR: {r}"),
            Self::HandshakeTimeout => write!(f, "handshake not completed in time"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// One decoded frame: message data or a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A message frame; `more` says another frame of the same message follows.
    Frame { more: bool, data: Bytes },
    /// A command frame: its whole body (name length, name, command data).
    Command(Bytes),
}

/// A big frame being received (see [`ZERO_COPY_MIN`]).
#[derive(Debug)]
struct Big {
    flags: u8,
    /// Declared size.
    size: usize,
    /// Receive buffer; `buf.len()` may be less than `size` while it grows, or more when it
    /// was recycled ([`crate::bigbuf`]): only `buf[..size]` is the frame.
    buf: Vec<u8>,
    filled: usize,
    /// How much of a fresh `buf` was populated ([`POPULATE_AHEAD`]); `usize::MAX` for a
    /// buffer whose pages are in place already (recycled, or grown by writing zeros).
    populated: usize,
}

/// A fresh big buffer's pages are faulted in this far ahead of what was received, in one
/// call per step ([`crate::pages::populate`]) rather than one fault per page; never further,
/// so a peer that declares a huge frame and sends little commits little memory.
const POPULATE_AHEAD: usize = 8 << 20;

/// Incremental frame decoder.
///
/// [`Decoder::decode`] consumes only whole small frames: a partial header or a partial small
/// frame is left unconsumed for the caller to present again with more bytes (the socket
/// keeps such leftovers per connection, so one shared read buffer serves all connections).
/// A big frame is consumed as it arrives into its own buffer, which the connection can
/// also read into directly ([`Decoder::big_spare`]).
#[derive(Debug)]
pub struct Decoder {
    max_frame: u64,
    big: Option<Big>,
}

impl Decoder {
    /// `max_frame`: frames declaring more bytes are a [`ProtocolError::FrameTooLarge`]
    /// (libzmq's `ZMQ_MAXMSGSIZE` is also checked per frame).
    pub fn new(max_frame: Option<u64>) -> Self {
        Decoder {
            max_frame: max_frame.unwrap_or(u64::MAX),
            big: None,
        }
    }

    /// Decodes as many frames as `input` holds, appending them to `out`; returns how many
    /// bytes were consumed (the rest is an incomplete header or small frame).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<Item>) -> Result<usize, ProtocolError> {
        let mut pos = 0;
        loop {
            if self.big.is_some() {
                let n = self.fill_big(&input[pos..]);
                pos += n;
                if let Some(item) = self.take_big_if_done() {
                    out.push(item);
                    continue;
                }
                return Ok(pos);
            }
            let rest = &input[pos..];
            if let Some(used) = whole_message(rest, self.max_frame, out) {
                pos += used;
                continue;
            }
            let Some((flags, size, hdr)) = parse_header(rest) else {
                return Ok(pos);
            };
            if size > self.max_frame {
                return Err(ProtocolError::FrameTooLarge(size));
            }
            // Commands are always small and handled whole; only data frames go "big".
            if size >= ZERO_COPY_MIN as u64 && flags & FLAG_COMMAND == 0 {
                let size = usize::try_from(size).map_err(|_| ProtocolError::FrameTooLarge(size))?;
                // a recycled buffer that fits (pages already mapped) or a fresh one
                let (buf, populated) = match crate::bigbuf::POOL.take(size) {
                    Some(b) => (b, usize::MAX),
                    None => match zeroed_buffer(size) {
                        Some(b) => (b, 0),
                        None => (vec![0u8; size.min(BIG_FALLBACK_INITIAL)], usize::MAX),
                    },
                };
                self.big = Some(Big {
                    flags,
                    size,
                    buf,
                    filled: 0,
                    populated,
                });
                pos += hdr;
                continue;
            }
            let size = size as usize; // < ZERO_COPY_MIN or a command, checked below
            if flags & FLAG_COMMAND != 0 && size > 16 << 20 {
                return Err(ProtocolError::BadCommand("command over 16 MiB"));
            }
            if rest.len() - hdr < size {
                return Ok(pos);
            }
            let body = Bytes::copy_from_slice(&rest[hdr..hdr + size]);
            pos += hdr + size;
            out.push(if flags & FLAG_COMMAND != 0 {
                Item::Command(body)
            } else {
                Item::Frame {
                    more: flags & FLAG_MORE != 0,
                    data: body,
                }
            });
        }
    }

    /// While a big frame is being received: the unfilled part of its buffer, to `read(2)`
    /// into directly. Follow with [`Decoder::big_filled`].
    pub fn big_spare(&mut self) -> Option<&mut [u8]> {
        let big = self.big.as_mut()?;
        if big.filled == big.buf.len() && big.filled < big.size {
            // Grow towards the declared size as data actually arrives (see BIG_FALLBACK_INITIAL).
            let new_len = (big.buf.len() * 2).clamp(1, big.size);
            big.buf.resize(new_len, 0);
        }
        // (a recycled buffer may be longer than the frame)
        let end = big.buf.len().min(big.size);
        if big.populated < end && big.filled + POPULATE_AHEAD / 2 >= big.populated {
            let upto = (big.filled + POPULATE_AHEAD).min(end);
            crate::pages::populate(&mut big.buf[big.populated..upto]);
            big.populated = upto;
        }
        Some(&mut big.buf[big.filled..end])
    }

    /// Bytes of the big frame in progress not received yet (`None`: no big frame).
    pub fn big_remaining(&self) -> Option<usize> {
        self.big.as_ref().map(|b| b.size - b.filled)
    }

    /// `n` bytes were read into [`Decoder::big_spare`]; returns the frame once complete.
    pub fn big_filled(&mut self, n: usize) -> Option<Item> {
        if let Some(big) = self.big.as_mut() {
            big.filled = (big.filled + n).min(big.buf.len().min(big.size));
        }
        self.take_big_if_done()
    }

    fn fill_big(&mut self, input: &[u8]) -> usize {
        let mut used = 0;
        while used < input.len() {
            let Some(spare) = self.big_spare() else {
                break;
            };
            let n = spare.len().min(input.len() - used);
            if n == 0 {
                break;
            }
            spare[..n].copy_from_slice(&input[used..used + n]);
            used += n;
            let big = self.big.as_mut().expect("big frame in progress");
            big.filled += n;
            if big.filled == big.size {
                break;
            }
        }
        used
    }

    fn take_big_if_done(&mut self) -> Option<Item> {
        let done = self.big.as_ref().is_some_and(|b| b.filled == b.size);
        if !done {
            return None;
        }
        let big = self.big.take().expect("checked above");
        Some(Item::Frame {
            more: big.flags & FLAG_MORE != 0,
            // back to the pool for the next big frame once the last reference is dropped
            data: crate::bigbuf::POOL.wrap(big.buf, big.size),
        })
    }
}

/// Frames a message may have for [`whole_message`] to take it in one piece (more are decoded
/// frame by frame: scanning ahead is repeated on every read while the message is incomplete).
const WHOLE_MESSAGE_MAX_FRAMES: usize = 32;

/// If `input` starts with a complete message (up to the frame without MORE) of small data
/// frames, copies it into one buffer and appends its frames as slices of that buffer;
/// returns the bytes consumed. Otherwise (incomplete, a command, a big or oversized frame,
/// too many frames) `None`, and the caller decodes frame by frame, reporting errors there.
///
/// One allocation per message instead of one per frame: a signed ipyparallel message has
/// seven or more frames, and the controller clones most of them (each clone of a frame
/// copied on its own allocated a second time, for the shared count).
fn whole_message(input: &[u8], max_frame: u64, out: &mut Vec<Item>) -> Option<usize> {
    // (more, body start, body end) of each frame, found by the one pass over the headers
    let mut spans = [(false, 0usize, 0usize); WHOLE_MESSAGE_MAX_FRAMES];
    let mut end = 0;
    let mut frames = 0;
    loop {
        let (flags, size, hdr) = parse_header(&input[end..])?;
        if flags & FLAG_COMMAND != 0 || size >= ZERO_COPY_MIN as u64 || size > max_frame {
            return None;
        }
        if frames == WHOLE_MESSAGE_MAX_FRAMES {
            return None;
        }
        let body = end + hdr;
        end = body + size as usize;
        if end > input.len() {
            return None;
        }
        let more = flags & FLAG_MORE != 0;
        spans[frames] = (more, body, end);
        frames += 1;
        if !more {
            break;
        }
    }
    if frames == 1 {
        return None; // nothing to share: the frame-by-frame path is as cheap
    }
    let chunk = Bytes::copy_from_slice(&input[..end]);
    out.extend(spans[..frames].iter().map(|&(more, a, b)| Item::Frame {
        more,
        data: chunk.slice(a..b),
    }));
    Some(end)
}

/// Parses a frame header: `(flags, size, header length)`, or `None` if incomplete.
fn parse_header(b: &[u8]) -> Option<(u8, u64, usize)> {
    let flags = *b.first()?;
    if flags & FLAG_LONG != 0 {
        let size: [u8; 8] = b.get(1..9)?.try_into().ok()?;
        Some((flags, u64::from_be_bytes(size), 9))
    } else {
        Some((flags, u64::from(*b.get(1)?), 2))
    }
}

/// Appends a frame header (short form up to 255 bytes, like libzmq).
pub fn put_header(out: &mut BytesMut, flags: u8, size: usize) {
    if size > 255 {
        out.put_u8(flags | FLAG_LONG);
        out.put_u64(size as u64);
    } else {
        out.put_u8(flags);
        out.put_u8(size as u8);
    }
}

/// Encodes a command frame: `name` then `data`.
pub fn put_command(out: &mut BytesMut, name: &[u8], data: &[u8]) {
    put_header(out, FLAG_COMMAND, 1 + name.len() + data.len());
    out.put_u8(name.len() as u8);
    out.put_slice(name);
    out.put_slice(data);
}

/// Encodes READY with its metadata properties (`Socket-Type`, `Identity`, ...).
pub fn put_ready(out: &mut BytesMut, props: &[(&str, &[u8])]) {
    let mut body = BytesMut::new();
    for (name, value) in props {
        body.put_u8(name.len() as u8);
        body.put_slice(name.as_bytes());
        body.put_u32(value.len() as u32);
        body.put_slice(value);
    }
    put_command(out, b"READY", &body);
}

/// Splits a command body into its name and data.
pub fn split_command(body: &Bytes) -> Result<(&[u8], Bytes), ProtocolError> {
    let n = *body
        .first()
        .ok_or(ProtocolError::BadCommand("empty command"))? as usize;
    if body.len() < 1 + n {
        return Err(ProtocolError::BadCommand("name longer than command"));
    }
    Ok((&body[1..1 + n], body.slice(1 + n..)))
}

/// Parses READY/metadata properties (`name-len name value-len(4) value`, repeated).
pub fn parse_properties(mut b: &[u8]) -> Result<Vec<(String, Bytes)>, ProtocolError> {
    let mut props = Vec::new();
    while !b.is_empty() {
        let n = b[0] as usize;
        let name = b
            .get(1..1 + n)
            .ok_or(ProtocolError::BadCommand("truncated property name"))?;
        let len: [u8; 4] = b
            .get(1 + n..5 + n)
            .and_then(|s| s.try_into().ok())
            .ok_or(ProtocolError::BadCommand("truncated property length"))?;
        let len = u32::from_be_bytes(len) as usize;
        let value = b
            .get(5 + n..5 + n + len)
            .ok_or(ProtocolError::BadCommand("truncated property value"))?;
        props.push((
            String::from_utf8_lossy(name).into_owned(),
            Bytes::copy_from_slice(value),
        ));
        b = &b[5 + n + len..];
    }
    Ok(props)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(frames: &[(u8, &[u8])]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for (flags, body) in frames {
            put_header(&mut out, *flags, body.len());
            out.put_slice(body);
        }
        out.to_vec()
    }

    #[test]
    fn short_and_long_frames_round_trip() {
        let big = vec![7u8; ZERO_COPY_MIN + 3];
        let bytes = encode(&[
            (FLAG_MORE, b""),
            (FLAG_MORE, &[1; 255]),
            (FLAG_MORE, &[2; 256]),
            (0, &big),
        ]);
        assert_eq!(&bytes[..2], &[FLAG_MORE, 0]);
        assert_eq!(&bytes[2..4], &[FLAG_MORE, 255], "255 bytes: short form");
        assert_eq!(
            bytes[4 + 255],
            FLAG_MORE | FLAG_LONG,
            "256 bytes: long form"
        );
        assert_eq!(&bytes[5 + 255..13 + 255], &256u64.to_be_bytes());
        let mut d = Decoder::new(None);
        let mut out = Vec::new();
        assert_eq!(d.decode(&bytes, &mut out).unwrap(), bytes.len());
        let lens: Vec<usize> = out
            .iter()
            .map(|i| match i {
                Item::Frame { data, .. } => data.len(),
                Item::Command(_) => usize::MAX,
            })
            .collect();
        assert_eq!(lens, vec![0, 255, 256, ZERO_COPY_MIN + 3]);
    }

    /// Big frames decoded one after another (each dropped before the next, so the next may
    /// get the previous one's recycled, longer buffer) are exactly their own bytes, whether
    /// they arrive whole or a few bytes at a time.
    #[test]
    fn big_frames_in_recycled_buffers_are_exactly_their_own_bytes() {
        for (i, size) in [ZERO_COPY_MIN * 3, ZERO_COPY_MIN + 5, ZERO_COPY_MIN * 2]
            .into_iter()
            .enumerate()
        {
            let fill = i as u8 + 1;
            let body = vec![fill; size];
            let bytes = encode(&[(0, &body)]);
            for step in [bytes.len(), 4093] {
                let mut d = Decoder::new(None);
                let mut out = Vec::new();
                let mut fed = 0;
                let mut pending = Vec::new();
                while fed < bytes.len() {
                    let end = (fed + step).min(bytes.len());
                    pending.extend_from_slice(&bytes[fed..end]);
                    fed = end;
                    let used = d.decode(&pending, &mut out).unwrap();
                    pending.drain(..used);
                }
                let [Item::Frame { data, more: false }] = &out[..] else {
                    panic!("one frame expected, got {}", out.len())
                };
                assert_eq!(data.len(), size);
                assert!(data.iter().all(|&b| b == fill), "stale bytes exposed");
            }
        }
    }

    #[test]
    fn oversize_declared_frame_is_an_error_before_allocating() {
        let mut d = Decoder::new(Some(1000));
        assert!(matches!(
            d.decode(&long_header(u64::MAX), &mut Vec::new()),
            Err(ProtocolError::FrameTooLarge(_))
        ));
    }

    fn long_header(size: u64) -> Vec<u8> {
        let mut hdr = vec![FLAG_LONG];
        hdr.extend_from_slice(&size.to_be_bytes());
        hdr
    }

    /// A frame above the fallback size gets its whole buffer at once (no doubling that
    /// copies the received part into fresh memory) and arrives intact.
    #[test]
    fn a_big_frame_is_received_into_one_buffer_of_its_size() {
        let size = BIG_FALLBACK_INITIAL + 12_345;
        let mut d = Decoder::new(None);
        let mut items = Vec::new();
        assert_eq!(d.decode(&long_header(size as u64), &mut items).unwrap(), 9);
        let buf = &d.big.as_ref().expect("big frame in progress").buf;
        assert!(buf.len() >= size, "buffer of {} for {size}", buf.len());
        let mut sent = 0usize;
        while let Some(spare) = d.big_spare() {
            let n = spare.len().min(1 << 20);
            for (i, b) in spare[..n].iter_mut().enumerate() {
                *b = ((sent + i) % 251) as u8;
            }
            sent += n;
            items.extend(d.big_filled(n));
        }
        assert_eq!(sent, size);
        let Some(Item::Frame { more: false, data }) = items.pop() else {
            panic!("no frame")
        };
        assert_eq!(data.len(), size);
        assert!(data.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    }

    /// A fresh big buffer is backed a bounded step ahead of the data, not all at once: a
    /// peer that declares a 64 MiB frame and sends nothing commits ~8 MiB.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_big_frame_buffer_is_populated_only_ahead_of_the_data() {
        use crate::pages::tests::rss_kib_at;
        let size = 64 << 20;
        let mut d = Decoder::new(None);
        d.decode(&long_header(size as u64), &mut Vec::new())
            .unwrap();
        if d.big.as_ref().expect("big frame").populated == usize::MAX {
            return; // a recycled buffer (another test's, in this process): in place already
        }
        let addr = d.big_spare().expect("spare").as_ptr() as usize;
        let populated = d.big.as_ref().unwrap().populated;
        assert_eq!(populated, POPULATE_AHEAD);
        let rss = rss_kib_at(addr + size / 2);
        assert!(
            rss < 3 * (POPULATE_AHEAD >> 10),
            "{rss} KiB resident after no data"
        );
        d.big_filled(POPULATE_AHEAD);
        d.big_spare().expect("spare");
        assert_eq!(d.big.as_ref().unwrap().populated, 2 * POPULATE_AHEAD);
    }

    /// A declared size no allocator can provide is no crash: the buffer starts at the
    /// fallback size and would grow only as bytes arrive.
    #[test]
    fn an_unallocatable_declared_frame_starts_small() {
        let mut d = Decoder::new(None);
        assert_eq!(d.decode(&long_header(1 << 60), &mut Vec::new()).unwrap(), 9);
        let big = d.big.as_ref().expect("big frame in progress");
        assert_eq!(big.buf.len(), BIG_FALLBACK_INITIAL);
        assert_eq!(d.big_remaining(), Some(1 << 60));
    }

    #[test]
    fn greeting_checks() {
        assert!(parse_greeting(&greeting()).is_ok());
        let mut g = greeting();
        g[12..16].copy_from_slice(b"PLAI");
        assert_eq!(parse_greeting(&g), Err(ProtocolError::BadMechanism));
        let mut g = greeting();
        g[10] = 2;
        assert!(parse_greeting(&g).is_err());
        assert!(parse_greeting(&[0u8; 64]).is_err());
    }

    #[test]
    fn ready_properties_round_trip() {
        let mut out = BytesMut::new();
        put_ready(
            &mut out,
            &[("Socket-Type", b"ROUTER"), ("Identity", b"abc")],
        );
        let mut d = Decoder::new(None);
        let mut items = Vec::new();
        d.decode(&out, &mut items).unwrap();
        let Item::Command(body) = &items[0] else {
            panic!("not a command")
        };
        let (name, data) = split_command(body).unwrap();
        assert_eq!(name, b"READY");
        let props = parse_properties(&data).unwrap();
        assert_eq!(
            props[0],
            ("Socket-Type".into(), Bytes::from_static(b"ROUTER"))
        );
        assert_eq!(props[1], ("Identity".into(), Bytes::from_static(b"abc")));
    }
}
