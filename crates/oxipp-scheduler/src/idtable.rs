//! A msg_id-keyed hash table that stores each key's hash next to it.
//!
//! Every task touches two id-keyed tables (in-flight jobs, finished-id memory) several
//! times. Storing the hash means a msg_id is hashed once when the task arrives and once per
//! reply lookup, never again: removals reuse the stored hash, and growing a table of a
//! million ids does not re-read a million strings scattered over the heap (which is what
//! made a plain `HashMap<Arc<str>, _>` rehash expensive). Keys are `Arc<str>` shared with the
//! job, so a removal can usually confirm the key by pointer.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::hash_table::{Entry, HashTable};

/// Hashes msg_ids; one instance per scheduler so both tables agree on hash values.
#[derive(Clone, Debug, Default)]
pub(crate) struct IdHasher(foldhash::fast::RandomState);

impl IdHasher {
    pub fn hash(&self, id: &str) -> u64 {
        self.0.hash_one(id)
    }
}

#[derive(Debug)]
struct Slot<V> {
    hash: u64,
    id: Arc<str>,
    value: V,
}

#[derive(Debug)]
pub(crate) struct IdTable<V> {
    table: HashTable<Slot<V>>,
}

impl<V> Default for IdTable<V> {
    fn default() -> Self {
        IdTable {
            table: HashTable::new(),
        }
    }
}

fn same(slot_id: &Arc<str>, id: &str) -> bool {
    std::ptr::eq(slot_id.as_ptr(), id.as_ptr()) && slot_id.len() == id.len() || **slot_id == *id
}

impl<V> IdTable<V> {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn get(&self, hash: u64, id: &str) -> Option<&V> {
        self.table
            .find(hash, |s| s.hash == hash && same(&s.id, id))
            .map(|s| &s.value)
    }

    #[cfg(test)]
    pub fn get_mut(&mut self, hash: u64, id: &str) -> Option<&mut V> {
        self.table
            .find_mut(hash, |s| s.hash == hash && same(&s.id, id))
            .map(|s| &mut s.value)
    }

    /// The stored key (to share the `Arc`) and value.
    pub fn get_key_value(&self, hash: u64, id: &str) -> Option<(&Arc<str>, &V)> {
        self.table
            .find(hash, |s| s.hash == hash && same(&s.id, id))
            .map(|s| (&s.id, &s.value))
    }

    pub fn contains(&self, hash: u64, id: &str) -> bool {
        self.get(hash, id).is_some()
    }

    /// Insert or replace; returns the previous value.
    pub fn insert(&mut self, hash: u64, id: Arc<str>, value: V) -> Option<V> {
        match self
            .table
            .entry(hash, |s| s.hash == hash && same(&s.id, &id), |s| s.hash)
        {
            Entry::Occupied(mut e) => Some(std::mem::replace(&mut e.get_mut().value, value)),
            Entry::Vacant(e) => {
                e.insert(Slot { hash, id, value });
                None
            }
        }
    }

    pub fn remove(&mut self, hash: u64, id: &str) -> Option<(Arc<str>, V)> {
        let e = self
            .table
            .find_entry(hash, |s| s.hash == hash && same(&s.id, id))
            .ok()?;
        let (slot, _) = e.remove();
        Some((slot.id, slot.value))
    }

    /// Remove `id` only if `pred` holds for its current value.
    pub fn remove_if(&mut self, hash: u64, id: &str, pred: impl FnOnce(&V) -> bool) -> bool {
        match self
            .table
            .find_entry(hash, |s| s.hash == hash && same(&s.id, id))
        {
            Ok(e) if pred(&e.get().value) => {
                e.remove();
                true
            }
            _ => false,
        }
    }

    #[cfg(test)]
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.table.iter().map(|s| &s.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_operations() {
        let h = IdHasher::default();
        let mut t: IdTable<u32> = IdTable::default();
        let ids: Vec<Arc<str>> = (0..10_000).map(|i| Arc::from(format!("id{i}"))).collect();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(t.insert(h.hash(id), id.clone(), i as u32), None);
        }
        assert_eq!(t.len(), 10_000);
        // lookups by a different allocation of the same string
        assert_eq!(t.get(h.hash("id42"), "id42"), Some(&42));
        assert_eq!(t.get_key_value(h.hash("id7"), "id7").unwrap().0, &ids[7]);
        assert!(!t.contains(h.hash("nope"), "nope"));
        assert_eq!(t.insert(h.hash("id42"), Arc::from("id42"), 1), Some(42));
        *t.get_mut(h.hash("id1"), "id1").unwrap() += 100;
        assert_eq!(t.get(h.hash("id1"), "id1"), Some(&101));
        assert!(!t.remove_if(h.hash("id3"), "id3", |v| *v != 3));
        assert!(t.remove_if(h.hash("id3"), "id3", |v| *v == 3));
        let (k, v) = t.remove(h.hash("id5"), "id5").unwrap();
        assert_eq!((&*k, v), ("id5", 5));
        assert_eq!(t.remove(h.hash("id5"), "id5"), None);
        assert_eq!(t.len(), 9_998);
        assert_eq!(t.values().count(), 9_998);
        assert!(!t.is_empty());
    }
}
