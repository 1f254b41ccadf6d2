//! The one pickle shape stock SQLiteDB stores in its `bufs blob` columns:
//! a list of `bytes`.
//!
//! Writing a real pickle (rather than a private encoding) keeps the file
//! readable by stock `ipcontroller --sqlitedb` and lets us read databases it
//! wrote. Only the opcodes CPython emits for `pickle.dumps([bytes, ...], -1)`
//! are understood; anything else is reported, never guessed.

use bytes::Bytes;

const PROTO: u8 = 0x80;
const FRAME: u8 = 0x95;
const EMPTY_LIST: u8 = b']';
const MARK: u8 = b'(';
const APPEND: u8 = b'a';
const APPENDS: u8 = b'e';
const STOP: u8 = b'.';
const SHORT_BINBYTES: u8 = b'C';
const BINBYTES: u8 = b'B';
const BINBYTES8: u8 = 0x8e;
const MEMOIZE: u8 = 0x94;
const BINPUT: u8 = b'q';
const LONG_BINPUT: u8 = b'r';
const BINGET: u8 = b'h';
const LONG_BINGET: u8 = b'j';

/// Pickle (protocol 4 opcodes) of a list of bytes.
pub(crate) fn encode(bufs: &[Bytes]) -> Vec<u8> {
    let total: usize = bufs.iter().map(|b| b.len() + 9).sum();
    let mut out = Vec::with_capacity(total + 8);
    out.extend_from_slice(&[PROTO, 4, EMPTY_LIST, MARK]);
    for b in bufs {
        if let Ok(n) = u8::try_from(b.len()) {
            out.push(SHORT_BINBYTES);
            out.push(n);
        } else if let Ok(n) = u32::try_from(b.len()) {
            out.push(BINBYTES);
            out.extend_from_slice(&n.to_le_bytes());
        } else {
            out.push(BINBYTES8);
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
        }
        out.extend_from_slice(b);
    }
    out.extend_from_slice(&[APPENDS, STOP]);
    out
}

#[derive(Clone)]
enum Item {
    Mark,
    List(Vec<Bytes>),
    Bytes(Bytes),
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or("truncated pickle")?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn uint(&mut self, width: usize) -> Result<usize, String> {
        let mut buf = [0u8; 8];
        buf[..width].copy_from_slice(self.take(width)?);
        usize::try_from(u64::from_le_bytes(buf)).map_err(|_| "length overflow".to_string())
    }
}

/// Decode a pickled list of bytes; `blob` is shared so buffers are
/// zero-copy slices of it.
pub(crate) fn decode(blob: &Bytes) -> Result<Vec<Bytes>, String> {
    let mut r = Reader { data: blob, pos: 0 };
    let mut stack: Vec<Item> = Vec::new();
    let mut memo: Vec<Option<Item>> = Vec::new();
    let put = |memo: &mut Vec<Option<Item>>, idx: usize, item: Item| {
        if memo.len() <= idx {
            memo.resize(idx + 1, None);
        }
        memo[idx] = Some(item);
    };
    loop {
        let op = r.take(1)?[0];
        match op {
            PROTO => {
                r.take(1)?;
            }
            FRAME => {
                r.uint(8)?;
            }
            EMPTY_LIST => stack.push(Item::List(Vec::new())),
            MARK => stack.push(Item::Mark),
            SHORT_BINBYTES | BINBYTES | BINBYTES8 => {
                let n = match op {
                    SHORT_BINBYTES => r.uint(1)?,
                    BINBYTES => r.uint(4)?,
                    _ => r.uint(8)?,
                };
                let start = r.pos;
                r.take(n)?;
                stack.push(Item::Bytes(blob.slice(start..start + n)));
            }
            MEMOIZE | BINPUT | LONG_BINPUT => {
                let idx = match op {
                    MEMOIZE => memo.len(),
                    BINPUT => r.uint(1)?,
                    _ => r.uint(4)?,
                };
                let top = stack.last().cloned().ok_or("memoize on empty stack")?;
                put(&mut memo, idx, top);
            }
            BINGET | LONG_BINGET => {
                let idx = if op == BINGET { r.uint(1)? } else { r.uint(4)? };
                let item = memo.get(idx).cloned().flatten().ok_or("unknown memo key")?;
                stack.push(item);
            }
            APPEND => {
                let Some(Item::Bytes(b)) = stack.pop() else {
                    return Err("APPEND of a non-bytes item".into());
                };
                match stack.last_mut() {
                    Some(Item::List(l)) => l.push(b),
                    _ => return Err("APPEND without a list".into()),
                }
            }
            APPENDS => {
                let mark = stack
                    .iter()
                    .rposition(|i| matches!(i, Item::Mark))
                    .ok_or("APPENDS without MARK")?;
                let items: Vec<Item> = stack.drain(mark..).skip(1).collect();
                let Some(Item::List(l)) = stack.last_mut() else {
                    return Err("APPENDS without a list".into());
                };
                for item in items {
                    match item {
                        Item::Bytes(b) => l.push(b),
                        _ => return Err("list item is not bytes".into()),
                    }
                }
            }
            STOP => {
                return match stack.pop() {
                    Some(Item::List(l)) if stack.is_empty() => Ok(l),
                    _ => Err("pickle is not a list of bytes".into()),
                }
            }
            other => return Err(format!("unsupported pickle opcode 0x{other:02x}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_arbitrary_bytes() {
        let bufs = vec![
            Bytes::from_static(b""),
            Bytes::from_static(b"\x00\x01\x00.e(]"),
            Bytes::from(vec![0u8; 300]),
            Bytes::from((0..=255u8).collect::<Vec<_>>()),
        ];
        assert_eq!(decode(&Bytes::from(encode(&bufs))).unwrap(), bufs);
        assert_eq!(
            decode(&Bytes::from(encode(&[]))).unwrap(),
            Vec::<Bytes>::new()
        );
    }

    #[test]
    fn reads_cpython_protocol5_output() {
        // pickle.dumps([b'ab', b'', b''], 5) from CPython 3.11: framed,
        // memoized, and the interned b'' repeated through BINGET.
        let py = b"\x80\x05\x95\x0f\x00\x00\x00\x00\x00\x00\x00]\x94(C\x02ab\x94C\x00\x94h\x02e.";
        assert_eq!(
            decode(&Bytes::from_static(py)).unwrap(),
            vec![
                Bytes::from_static(b"ab"),
                Bytes::from_static(b""),
                Bytes::from_static(b"")
            ]
        );
        // pickle.dumps([b'x'], 5): single APPEND
        let one = b"\x80\x05\x95\x08\x00\x00\x00\x00\x00\x00\x00]\x94C\x01x\x94a.";
        assert_eq!(
            decode(&Bytes::from_static(one)).unwrap(),
            vec![Bytes::from_static(b"x")]
        );
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            &b""[..],
            b"\x80\x04]",
            b"\x80\x04](C\x05ab",
            b"\x80\x04(C\x01ae.",
            b"\x80\x04]N.",
            b"\x80\x04]h\x09.",
            b"\x80\x04]B\xff\xff\xff\xff.",
        ] {
            assert!(decode(&Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
    }
}
