//! Bounded memory of signatures already seen, to drop replayed messages.
//!
//! jupyter_client keeps 65 536 digests and culls randomly; we evict in arrival order, which
//! keeps the guarantee exact for the most recent messages and memory fixed at `capacity`.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Digests are HMAC outputs, already uniformly distributed: their first 8 bytes are a good
/// hash, and SipHash over all 32 (done for every message the controller receives) cost more
/// than the lookup itself. Forging colliding digests needs the key, which already allows
/// anything.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut head = [0u8; 8];
        let n = bytes.len().min(8);
        head[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(head);
    }

    fn write_usize(&mut self, _len: usize) {
        // the array length prefix: the same for every digest
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub struct DigestHistory {
    seen: HashSet<[u8; 32], BuildHasherDefault<DigestHasher>>,
    order: VecDeque<[u8; 32]>,
    capacity: usize,
}

impl DigestHistory {
    pub fn new(capacity: usize) -> Self {
        DigestHistory {
            seen: HashSet::with_capacity_and_hasher(capacity.min(1 << 16), Default::default()),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity: capacity.max(1),
        }
    }

    /// Records `digest`; returns false if it was already seen (a replay).
    pub fn insert(&mut self, digest: [u8; 32]) -> bool {
        if !self.seen.insert(digest) {
            return false;
        }
        self.order.push_back(digest);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_replay_and_stays_bounded() {
        let mut h = DigestHistory::new(3);
        assert!(h.insert([1; 32]));
        assert!(!h.insert([1; 32]));
        for i in 2..10u8 {
            assert!(h.insert([i; 32]));
        }
        assert_eq!(h.len(), 3);
        // evicted long ago, so accepted again
        assert!(h.insert([1; 32]));
    }
}
