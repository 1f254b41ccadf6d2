//! The engine table: stock's parallel `targets`/`loads` lists, indexed so that choosing an
//! engine does not need a linear pass.
//!
//! Stock keeps engines in a list that is its LRU order: a newly registered engine is
//! inserted at the **front**, and an engine that is given a task moves to the **end**. Here
//! that order is a position key per engine: registration takes `front - 1`, assignment takes
//! `back + 1`, so sorting by position reproduces stock's list exactly. Each scheme keeps
//! only the index it needs, so a task costs two or four B-tree operations:
//! * `leastload`: `by_load`, `(load, position)` → engine. Its first entry is stock's pick
//!   (first index of the minimum load in LRU order), found in O(log E); a filtered choice
//!   walks it in order and takes the first acceptable engine.
//! * every other scheme: `avail`, the engines below the high-water mark by position (first
//!   = `lru`'s pick; also the ordered candidate list for `weighted` and filtered choices);
//!   `plainrandom`/`twobin` add `bag`, the same engines in a vector for O(1) uniform
//!   sampling (`twobin` takes the smaller position of two uniform picks, which has the same
//!   distribution as stock's `min(randint, randint)` over the ordered list).
//!
//! `weighted` and filtered choices of the random schemes collect the candidates in LRU order
//! and apply the literal stock chooser (O(E) at worst; `targets`/`follow` only look at the
//! engines they name). The full list in order ([`EngineTable::iter_lru`], for queue status)
//! is sorted on demand.
//!
//! Engines are identified internally by a slot, and by an *incarnation* number that is never
//! reused: per-engine completed/failed sets in stock are reset when an engine registers, so
//! finished tasks record the incarnation they ran on, not the uuid.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::Rng;

use crate::scheme::{weighted, Scheme};
use crate::FastMap;

const NOT_IN_BAG: usize = usize::MAX;

#[derive(Debug)]
pub(crate) struct Engine {
    pub uuid: Arc<str>,
    pub inc: u32,
    pub live: bool,
    /// Outstanding tasks (stock `loads[idx]`, = `len(pending[uuid])`).
    pub load: u32,
    pos: i64,
    bag_idx: usize,
}

#[derive(Debug)]
pub(crate) struct EngineTable {
    hwm: u32,
    scheme: Scheme,
    slots: Vec<Option<Engine>>,
    free: Vec<u32>,
    by_uuid: FastMap<Arc<str>, u32>,
    by_inc: FastMap<u32, u32>,
    next_inc: u32,
    /// `leastload` only.
    by_load: BTreeSet<(u32, i64, u32)>,
    /// All schemes but `leastload`.
    avail: BTreeMap<i64, u32>,
    /// `plainrandom` and `twobin` only.
    bag: Vec<u32>,
    n_avail: usize,
    at_hwm_minus_1: usize,
    front: i64,
    back: i64,
}

impl EngineTable {
    pub fn new(hwm: u32, scheme: Scheme) -> Self {
        EngineTable {
            hwm,
            scheme,
            slots: Vec::new(),
            free: Vec::new(),
            by_uuid: FastMap::default(),
            by_inc: FastMap::default(),
            next_inc: 0,
            by_load: BTreeSet::new(),
            avail: BTreeMap::new(),
            bag: Vec::new(),
            n_avail: 0,
            at_hwm_minus_1: 0,
            front: 0,
            back: 0,
        }
    }

    fn is_avail(&self, load: u32) -> bool {
        self.hwm == 0 || load < self.hwm
    }

    fn uses_by_load(&self) -> bool {
        self.scheme == Scheme::LeastLoad
    }

    fn uses_bag(&self) -> bool {
        matches!(self.scheme, Scheme::PlainRandom | Scheme::TwoBin)
    }

    /// Live engines with spare capacity (stock `available_engines()`).
    pub fn n_avail(&self) -> usize {
        self.n_avail
    }

    /// Live engines.
    pub fn n_live(&self) -> usize {
        self.by_uuid.len()
    }

    /// Live engines whose load is exactly `hwm - 1` (stock's rescan trigger). 0 if hwm = 0.
    pub fn n_at_hwm_minus_1(&self) -> usize {
        self.at_hwm_minus_1
    }

    pub fn get(&self, slot: u32) -> &Engine {
        self.slots[slot as usize]
            .as_ref()
            .expect("engine slot in use")
    }

    fn get_mut(&mut self, slot: u32) -> &mut Engine {
        self.slots[slot as usize]
            .as_mut()
            .expect("engine slot in use")
    }

    pub fn live_slot(&self, uuid: &str) -> Option<u32> {
        self.by_uuid.get(uuid).copied()
    }

    pub fn live_slot_by_inc(&self, inc: u32) -> Option<u32> {
        self.by_inc.get(&inc).copied()
    }

    /// Live engines in stock list order (LRU first). O(E log E): for status queries.
    pub fn iter_lru(&self) -> impl Iterator<Item = &Engine> + '_ {
        let mut v: Vec<&Engine> = self.by_uuid.values().map(|&s| self.get(s)).collect();
        v.sort_unstable_by_key(|e| e.pos);
        v.into_iter()
    }

    /// Candidate engines (with capacity) in LRU order, for the schemes that keep `avail`.
    fn avail_in_order(&self) -> impl Iterator<Item = u32> + '_ {
        self.avail.values().copied()
    }

    fn attach(&mut self, slot: u32) {
        let (load, pos) = {
            let e = self.get(slot);
            (e.load, e.pos)
        };
        if self.uses_by_load() {
            self.by_load.insert((load, pos, slot));
        }
        if self.is_avail(load) {
            self.n_avail += 1;
            if !self.uses_by_load() {
                self.avail.insert(pos, slot);
            }
            if self.uses_bag() {
                let idx = self.bag.len();
                self.bag.push(slot);
                self.get_mut(slot).bag_idx = idx;
            }
        }
        if self.hwm > 0 && load == self.hwm - 1 {
            self.at_hwm_minus_1 += 1;
        }
    }

    fn detach(&mut self, slot: u32) {
        let (load, pos, bag_idx) = {
            let e = self.get(slot);
            (e.load, e.pos, e.bag_idx)
        };
        if self.uses_by_load() {
            self.by_load.remove(&(load, pos, slot));
        }
        if self.is_avail(load) {
            self.n_avail -= 1;
            if !self.uses_by_load() {
                self.avail.remove(&pos);
            }
            if bag_idx != NOT_IN_BAG {
                self.bag.swap_remove(bag_idx);
                if let Some(&moved) = self.bag.get(bag_idx) {
                    self.get_mut(moved).bag_idx = bag_idx;
                }
                self.get_mut(slot).bag_idx = NOT_IN_BAG;
            }
        }
        if self.hwm > 0 && load == self.hwm - 1 {
            self.at_hwm_minus_1 -= 1;
        }
    }

    /// Register an engine at the front of the list with load 0. `None` if it is already live.
    pub fn add(&mut self, uuid: &str) -> Option<u32> {
        if self.by_uuid.contains_key(uuid) {
            return None;
        }
        let uuid: Arc<str> = Arc::from(uuid);
        let inc = self.next_inc;
        self.next_inc = self.next_inc.wrapping_add(1);
        self.front -= 1;
        let engine = Engine {
            uuid: uuid.clone(),
            inc,
            live: true,
            load: 0,
            pos: self.front,
            bag_idx: NOT_IN_BAG,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(engine);
                s
            }
            None => {
                self.slots.push(Some(engine));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 engines")
            }
        };
        self.by_uuid.insert(uuid, slot);
        self.by_inc.insert(inc, slot);
        self.attach(slot);
        Some(slot)
    }

    /// Take an engine out of the list. Returns its slot and load (pending tasks); the slot
    /// stays allocated (dead) until those tasks are answered via [`unassign`](Self::unassign).
    pub fn remove(&mut self, uuid: &str) -> Option<(u32, u32)> {
        let slot = self.by_uuid.remove(uuid)?;
        self.detach(slot);
        let e = self.get_mut(slot);
        e.live = false;
        let (inc, load) = (e.inc, e.load);
        self.by_inc.remove(&inc);
        if load == 0 {
            self.release_slot(slot);
        }
        Some((slot, load))
    }

    fn release_slot(&mut self, slot: u32) {
        self.slots[slot as usize] = None;
        self.free.push(slot);
    }

    /// A task was sent to `slot` (live): load + 1 and move to the end of the list.
    pub fn assign(&mut self, slot: u32) {
        self.detach(slot);
        self.back += 1;
        let back = self.back;
        let e = self.get_mut(slot);
        debug_assert!(e.live);
        e.load += 1;
        e.pos = back;
        self.attach(slot);
    }

    /// A task on `slot` ended: load - 1 (list position unchanged). A dead engine's slot is
    /// freed with its last task.
    pub fn unassign(&mut self, slot: u32) {
        if self.get(slot).live {
            self.detach(slot);
            self.get_mut(slot).load -= 1;
            self.attach(slot);
        } else {
            let e = self.get_mut(slot);
            e.load -= 1;
            if e.load == 0 {
                self.release_slot(slot);
            }
        }
    }

    /// Scheme choice among all engines with capacity (a job with no constraints).
    pub fn choose_any(&self, rng: &mut StdRng) -> Option<u32> {
        if self.n_avail == 0 {
            return None;
        }
        Some(match self.scheme {
            Scheme::LeastLoad => self.by_load.first()?.2,
            Scheme::Lru => *self.avail.first_key_value()?.1,
            Scheme::PlainRandom => self.bag[rng.gen_range(0..self.bag.len())],
            Scheme::TwoBin => {
                let a = self.bag[rng.gen_range(0..self.bag.len())];
                let b = self.bag[rng.gen_range(0..self.bag.len())];
                if self.get(a).pos <= self.get(b).pos {
                    a
                } else {
                    b
                }
            }
            Scheme::Weighted => {
                let i = weighted(
                    self.avail_in_order().map(|s| self.get(s).load),
                    self.n_avail,
                    rng,
                );
                self.avail_in_order().nth(i)?
            }
        })
    }

    /// Scheme choice among engines with capacity that pass `ok`. With `among`, only those
    /// slots are considered (the engines a job's `targets` or `follow` name).
    pub fn choose_where(
        &self,
        rng: &mut StdRng,
        among: Option<Vec<u32>>,
        ok: impl Fn(&Engine) -> bool,
    ) -> Option<u32> {
        if self.n_avail == 0 {
            return None;
        }
        let cands: Vec<u32> = match among {
            Some(mut slots) => {
                slots.retain(|&s| {
                    let e = self.get(s);
                    e.live && self.is_avail(e.load) && ok(e)
                });
                slots.sort_unstable_by_key(|&s| self.get(s).pos);
                slots.dedup();
                slots
            }
            // first acceptable entry in (load, position) order = stock's pick
            None if self.uses_by_load() => {
                return self
                    .by_load
                    .iter()
                    .take_while(|k| self.is_avail(k.0))
                    .map(|k| k.2)
                    .find(|&s| ok(self.get(s)));
            }
            None if self.scheme == Scheme::Lru => {
                return self.avail_in_order().find(|&s| ok(self.get(s)));
            }
            None => self.avail_in_order().filter(|&s| ok(self.get(s))).collect(),
        };
        if cands.is_empty() {
            return None;
        }
        let loads: Vec<u32> = cands.iter().map(|&s| self.get(s).load).collect();
        Some(cands[self.scheme.choose_index(&loads, rng)])
    }

    /// Check internal consistency (tests).
    #[cfg(test)]
    pub fn assert_consistent(&self) {
        let live: Vec<u32> = self.by_uuid.values().copied().collect();
        let mut n_avail = 0;
        let mut n_hm1 = 0;
        for &s in &live {
            let e = self.get(s);
            assert!(e.live);
            assert_eq!(self.by_inc.get(&e.inc), Some(&s));
            if self.uses_by_load() {
                assert!(self.by_load.contains(&(e.load, e.pos, s)));
            }
            if self.is_avail(e.load) {
                n_avail += 1;
                if self.uses_bag() {
                    assert_eq!(self.bag[e.bag_idx], s);
                }
                if !self.uses_by_load() {
                    assert_eq!(self.avail.get(&e.pos), Some(&s));
                }
            } else {
                assert_eq!(e.bag_idx, NOT_IN_BAG);
            }
            if self.hwm > 0 && e.load == self.hwm - 1 {
                n_hm1 += 1;
            }
        }
        assert_eq!(n_avail, self.n_avail);
        if self.uses_by_load() {
            assert_eq!(self.by_load.len(), live.len());
        } else {
            assert_eq!(self.avail.len(), n_avail);
        }
        if self.uses_bag() {
            assert_eq!(self.bag.len(), n_avail);
        }
        assert_eq!(n_hm1, self.at_hwm_minus_1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn uuids(t: &EngineTable) -> Vec<String> {
        t.iter_lru().map(|e| e.uuid.to_string()).collect()
    }

    #[test]
    fn stock_list_order() {
        let mut t = EngineTable::new(0, Scheme::LeastLoad);
        for u in ["a", "b", "c"] {
            t.add(u).unwrap();
        }
        // inserted at the front
        assert_eq!(uuids(&t), ["c", "b", "a"]);
        assert!(t.add("b").is_none());
        let b = t.live_slot("b").unwrap();
        t.assign(b);
        assert_eq!(uuids(&t), ["c", "a", "b"]);
        t.unassign(b);
        assert_eq!(uuids(&t), ["c", "a", "b"], "finishing does not move");
        t.assert_consistent();
    }

    #[test]
    fn leastload_and_lru_match_literal_stock() {
        let mut rng = StdRng::seed_from_u64(0);
        for scheme in [Scheme::LeastLoad, Scheme::Lru] {
            for hwm in [0, 1, 2, 3] {
                let mut t = EngineTable::new(hwm, scheme);
                for i in 0..7 {
                    t.add(&format!("e{i}"));
                }
                for step in 0..200 {
                    // mirror of stock: the literal chooser over the ordered, hwm-filtered list
                    let list: Vec<(u32, u32)> = t
                        .iter_lru()
                        .filter(|e| hwm == 0 || e.load < hwm)
                        .map(|e| (t.live_slot(&e.uuid).unwrap(), e.load))
                        .collect();
                    let fast = t.choose_any(&mut rng);
                    let slow = t.choose_where(&mut rng, None, |_| true);
                    let stock = (!list.is_empty()).then(|| {
                        let loads: Vec<u32> = list.iter().map(|x| x.1).collect();
                        list[scheme.choose_index(&loads, &mut rng)].0
                    });
                    assert_eq!(fast, stock, "{scheme} hwm={hwm} step={step}");
                    assert_eq!(slow, stock, "{scheme} hwm={hwm} step={step}");
                    // filtered: skip the stock pick, the next acceptable one in stock order
                    if let Some(first) = stock {
                        let filtered: Vec<(u32, u32)> =
                            list.iter().copied().filter(|x| x.0 != first).collect();
                        let want = (!filtered.is_empty()).then(|| {
                            let loads: Vec<u32> = filtered.iter().map(|x| x.1).collect();
                            filtered[scheme.choose_index(&loads, &mut rng)].0
                        });
                        let got =
                            t.choose_where(&mut rng, None, |e| t.live_slot(&e.uuid) != Some(first));
                        assert_eq!(got, want, "{scheme} hwm={hwm} step={step} filtered");
                    }
                    // pseudo-random workload: assign the pick or finish a task
                    if step % 3 == 2 {
                        let busy: Vec<u32> = t
                            .iter_lru()
                            .filter(|e| e.load > 0)
                            .map(|e| t.live_slot(&e.uuid).unwrap())
                            .collect();
                        if let Some(&s) = busy.get(step % busy.len().max(1)) {
                            t.unassign(s);
                        }
                    } else if let Some(s) = fast {
                        t.assign(s);
                    }
                    t.assert_consistent();
                }
            }
        }
    }

    #[test]
    fn random_schemes_keep_indices_consistent() {
        let mut rng = StdRng::seed_from_u64(5);
        for scheme in [Scheme::PlainRandom, Scheme::TwoBin, Scheme::Weighted] {
            for hwm in [0, 1, 2] {
                let mut t = EngineTable::new(hwm, scheme);
                for i in 0..9 {
                    t.add(&format!("e{i}"));
                }
                for step in 0..300 {
                    if step % 4 == 3 {
                        let busy: Vec<u32> = t
                            .iter_lru()
                            .filter(|e| e.load > 0)
                            .map(|e| t.live_slot(&e.uuid).unwrap())
                            .collect();
                        if !busy.is_empty() {
                            t.unassign(busy[step % busy.len()]);
                        }
                    } else if let Some(s) = t.choose_any(&mut rng) {
                        assert!(hwm == 0 || t.get(s).load < hwm);
                        t.assign(s);
                    } else {
                        assert_eq!(t.n_avail(), 0);
                    }
                    if step == 150 {
                        t.remove("e3");
                        t.add("late");
                    }
                    t.assert_consistent();
                }
            }
        }
    }

    #[test]
    fn dead_engine_slot_lives_until_drained() {
        let mut t = EngineTable::new(1, Scheme::Lru);
        t.add("a");
        let a = t.live_slot("a").unwrap();
        t.assign(a);
        assert_eq!(t.n_avail(), 0);
        assert_eq!(t.remove("a"), Some((a, 1)));
        assert!(t.live_slot("a").is_none());
        assert_eq!(t.n_live(), 0);
        assert_eq!(&*t.get(a).uuid, "a");
        // re-registration under the same uuid gets a fresh slot and incarnation
        let a2 = t.add("a").unwrap();
        assert_ne!(a2, a);
        assert_ne!(t.get(a2).inc, t.get(a).inc);
        t.unassign(a);
        assert!(t.slots[a as usize].is_none());
        t.assert_consistent();
        assert_eq!(t.remove("nope"), None);
    }
}
