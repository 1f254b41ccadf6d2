//! Property tests of the frame decoder: hostile bytes never panic; any split of a valid
//! stream decodes to the same frames as the whole stream, fed the way a connection feeds
//! it (unconsumed bytes presented again with the next read; big frames read directly
//! into their buffer).

use bytes::{BufMut, Bytes, BytesMut};
use oxipp_zmtp::frame::{self, Decoder, Item, FLAG_COMMAND, FLAG_MORE, ZERO_COPY_MIN};
use proptest::prelude::*;

/// Feeds `stream` in chunks cut at `cuts`, like `Conn::read` does; returns the items.
fn feed(
    stream: &[u8],
    cuts: &[usize],
    direct_big: bool,
) -> Result<Vec<Item>, frame::ProtocolError> {
    let mut d = Decoder::new(Some(1 << 24));
    let mut items = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut pos = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.push(stream.len());
    cuts.sort_unstable();
    for cut in cuts {
        while pos < cut {
            if direct_big && pending.is_empty() {
                if let Some(spare) = d.big_spare() {
                    let n = spare.len().min(cut - pos);
                    spare[..n].copy_from_slice(&stream[pos..pos + n]);
                    pos += n;
                    items.extend(d.big_filled(n));
                    continue;
                }
            }
            let mut buf = std::mem::take(&mut pending);
            buf.extend_from_slice(&stream[pos..cut]);
            pos = cut;
            let used = d.decode(&buf, &mut items)?;
            pending = buf[used..].to_vec();
        }
    }
    Ok(items)
}

fn encode(frames: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for (flags, body) in frames {
        if flags & FLAG_COMMAND != 0 {
            frame::put_command(&mut out, b"PING", body);
        } else {
            frame::put_header(&mut out, *flags, body.len());
            out.put_slice(body);
        }
    }
    out.to_vec()
}

fn frames() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    let size = prop_oneof![
        8 => 0usize..300,
        1 => Just(ZERO_COPY_MIN - 1),
        1 => Just(ZERO_COPY_MIN),
        1 => ZERO_COPY_MIN..ZERO_COPY_MIN + 5000,
    ];
    let one = (
        prop_oneof![Just(0u8), Just(FLAG_MORE), Just(FLAG_COMMAND)],
        size,
        any::<u8>(),
    )
        .prop_map(|(flags, n, seed)| {
            (
                flags,
                (0..n).map(|i| (i as u8).wrapping_mul(seed)).collect(),
            )
        });
    proptest::collection::vec(one, 0..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096),
                                cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let _ = feed(&bytes, &cuts, true);
        let _ = feed(&bytes, &cuts, false);
        let _ = frame::parse_greeting(&bytes);
        if let Ok(Item::Command(body)) = feed(&bytes, &[], false).map(|v| v.into_iter().next().unwrap_or(Item::Command(Bytes::new()))) {
            if let Ok((_, data)) = frame::split_command(&body) {
                let _ = frame::parse_properties(&data);
            }
        }
    }

    #[test]
    fn random_splits_decode_identically(fs in frames(),
                                        cuts in proptest::collection::vec(any::<usize>(), 0..20),
                                        direct in any::<bool>()) {
        let stream = encode(&fs);
        let whole = feed(&stream, &[], false).unwrap();
        prop_assert_eq!(whole.len(), fs.len());
        for (item, (flags, body)) in whole.iter().zip(&fs) {
            match item {
                Item::Frame { more, data } => {
                    prop_assert_eq!(*more, flags & FLAG_MORE != 0);
                    prop_assert_eq!(&data[..], &body[..]);
                }
                Item::Command(c) => {
                    prop_assert!(flags & FLAG_COMMAND != 0);
                    let (name, data) = frame::split_command(c).unwrap();
                    prop_assert_eq!(name, b"PING");
                    prop_assert_eq!(&data[..], &body[..]);
                }
            }
        }
        let split = feed(&stream, &cuts, direct).unwrap();
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn truncated_streams_never_yield_wrong_frames(fs in frames(), cut in any::<usize>()) {
        let stream = encode(&fs);
        let cut = cut % (stream.len() + 1);
        let got = feed(&stream[..cut], &[], true).unwrap();
        let whole = feed(&stream, &[], false).unwrap();
        prop_assert!(got.len() <= whole.len());
        prop_assert_eq!(&got[..], &whole[..got.len()]);
    }
}
