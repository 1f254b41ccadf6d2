//! In-memory store with stock DictDB semantics, including its culling.
//!
//! Culling (DictDB `_maybe_cull`, run after every add and update):
//!
//! * **by count**: when there are more than `record_limit` records, the
//!   oldest `int(cull_fraction * record_limit)` records *that have a
//!   `submitted` date* are culled, oldest `submitted` first, ties in
//!   insertion order (stock sorts `get_history()`, which skips records
//!   without `submitted`).
//! * **by size**: when the total length of all `buffers` + `result_buffers`
//!   exceeds `size_limit`, the oldest records are culled one at a time until
//!   the total is at most `size_limit * (1 - cull_fraction)`. That can
//!   include the record just added or updated.
//! * later `get_record`/`update_record` of a culled id fail with
//!   `KeyError("Record 'id' has been culled for size")` (whatever the
//!   reason for culling), while `find_records` simply no longer sees it.
//!
//! Deviations, each only where stock is unbounded or hangs:
//!
//! * stock remembers every culled id forever; we remember the most recent
//!   [`DEFAULT_CULLED_ID_CAPACITY`] (configurable). Older culled ids report
//!   the ordinary "No such msg_id" `KeyError` instead; both are `KeyError`s,
//!   which is all the Hub distinguishes.
//! * stock culls `int(fraction * limit)` records even when that is 0 (limit
//!   below 10 never culls) and never culls records without `submitted`
//!   (orphan IOPub records). We cull at least enough to get back to
//!   `record_limit`, taking unsubmitted records (oldest inserted first) only
//!   when no submitted record is left; with the defaults this never differs
//!   from stock.
//! * when no record is left to cull, size culling stops instead of looping
//!   forever as stock does.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use foldhash::fast::RandomState;

use crate::dates::truncate_micros;
use crate::query::Query;
use crate::record::TaskRecord;
use crate::store::{py_repr, DbError, TaskStore};

/// How many culled ids [`MemoryStore`] remembers by default (a few MB of
/// uuids), enough for any client still polling a recently culled task.
pub const DEFAULT_CULLED_ID_CAPACITY: usize = 65_536;

/// The DictDB configurables, with the stock defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MemoryLimits {
    /// `DictDB.record_limit`: maximum number of records (default 1024).
    pub record_limit: usize,
    /// `DictDB.size_limit`: maximum total buffer bytes (default 1 GiB).
    pub size_limit: usize,
    /// `DictDB.cull_fraction`: how much to cull once a limit is hit (0.1).
    pub cull_fraction: f64,
}

impl Default for MemoryLimits {
    fn default() -> Self {
        MemoryLimits {
            record_limit: 1024,
            size_limit: 1 << 30,
            cull_fraction: 0.1,
        }
    }
}

struct Entry {
    id: Arc<str>,
    /// Added while its id was in the culled set: stock checks the culled
    /// set before the records, so such a record stays unreadable. Recorded
    /// once here so reads need a single hash lookup.
    shadowed: bool,
    /// Insertion order, the tie-break stock gets from dict order.
    seq: u64,
    bytes: usize,
    rec: TaskRecord,
}

/// A FIFO-bounded set of culled ids.
struct CulledIds {
    capacity: usize,
    order: VecDeque<Arc<str>>,
    set: HashSet<Arc<str>, RandomState>,
}

impl CulledIds {
    fn insert(&mut self, id: Arc<str>) {
        if self.capacity == 0 || !self.set.insert(id.clone()) {
            return;
        }
        self.order.push_back(id);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }
}

/// DictDB-compatible in-memory store.
///
/// `get_record`/`update_record`/`contains` are hash lookups; adding, or
/// changing `submitted`, also maintains an ordered index (`O(log n)` with
/// `n <= record_limit`), which is what makes culling and `get_history`
/// cheap instead of the stock full sort per culled record.
pub struct MemoryStore {
    limits: MemoryLimits,
    /// foldhash with a per-store random seed: faster than SipHash on uuid
    /// keys (this map is hit ~3 times per task) and still seeded, so
    /// client-chosen msg_ids cannot be precomputed to collide.
    records: HashMap<Arc<str>, Entry, RandomState>,
    by_submitted: BTreeMap<(DateTime<Utc>, u64), Arc<str>>,
    unsubmitted: BTreeMap<u64, Arc<str>>,
    next_seq: u64,
    buffer_bytes: usize,
    culled: CulledIds,
}

fn normalize_dates(rec: &mut TaskRecord) {
    for d in [
        &mut rec.submitted,
        &mut rec.started,
        &mut rec.completed,
        &mut rec.received,
    ] {
        *d = d.map(truncate_micros);
    }
}

fn culled_error(msg_id: &str) -> DbError {
    DbError::Culled(msg_id.to_owned())
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(MemoryLimits::default())
    }
}

impl MemoryStore {
    pub fn new(limits: MemoryLimits) -> Self {
        MemoryStore::with_culled_capacity(limits, DEFAULT_CULLED_ID_CAPACITY)
    }

    /// Like [`MemoryStore::new`], remembering at most `capacity` culled ids
    /// (0: forget them immediately).
    pub fn with_culled_capacity(limits: MemoryLimits, capacity: usize) -> Self {
        MemoryStore {
            limits,
            records: HashMap::default(),
            by_submitted: BTreeMap::new(),
            unsubmitted: BTreeMap::new(),
            next_seq: 0,
            buffer_bytes: 0,
            culled: CulledIds {
                capacity,
                order: VecDeque::new(),
                set: HashSet::default(),
            },
        }
    }

    pub fn limits(&self) -> MemoryLimits {
        self.limits
    }

    /// Running total of buffer bytes held (DictDB `_buffer_bytes`).
    pub fn total_buffer_bytes(&self) -> usize {
        self.buffer_bytes
    }

    /// Whether `msg_id` is among the remembered culled ids.
    pub fn is_culled(&self, msg_id: &str) -> bool {
        self.culled.contains(msg_id)
    }

    fn index_insert(&mut self, id: Arc<str>, seq: u64, submitted: Option<DateTime<Utc>>) {
        match submitted {
            Some(d) => self.by_submitted.insert((d, seq), id),
            None => self.unsubmitted.insert(seq, id),
        };
    }

    fn index_remove(&mut self, seq: u64, submitted: Option<DateTime<Utc>>) {
        match submitted {
            Some(d) => self.by_submitted.remove(&(d, seq)),
            None => self.unsubmitted.remove(&seq),
        };
    }

    fn remove(&mut self, msg_id: &str) -> Option<Entry> {
        let entry = self.records.remove(msg_id)?;
        self.index_remove(entry.seq, entry.rec.submitted);
        self.buffer_bytes -= entry.bytes;
        Some(entry)
    }

    /// Cull the oldest record, preferring (as stock only considers) records
    /// with a `submitted` date. False when the store is empty.
    fn cull_one(&mut self, allow_unsubmitted: bool) -> bool {
        let id = match self.by_submitted.first_key_value() {
            Some((_, id)) => id.clone(),
            None if allow_unsubmitted => match self.unsubmitted.first_key_value() {
                Some((_, id)) => id.clone(),
                None => return false,
            },
            None => return false,
        };
        if let Some(entry) = self.remove(&id) {
            self.culled.insert(entry.id);
        }
        true
    }

    fn maybe_cull(&mut self) {
        let MemoryLimits {
            record_limit,
            size_limit,
            cull_fraction,
        } = self.limits;
        let fraction = cull_fraction.max(0.0);
        if self.records.len() > record_limit {
            let stock = (fraction * record_limit as f64) as usize;
            let excess = self.records.len() - record_limit;
            for _ in 0..stock.max(excess) {
                if !self.cull_one(false) {
                    break;
                }
            }
            while self.records.len() > record_limit && self.cull_one(true) {}
        }
        if self.buffer_bytes > size_limit {
            let target = size_limit as f64 * (1.0 - fraction);
            while self.buffer_bytes as f64 > target && self.cull_one(true) {}
        }
    }

    fn sorted(&self, mut entries: Vec<&Entry>) -> Vec<TaskRecord> {
        entries.sort_by_key(|e| (e.rec.submitted, e.seq));
        entries.into_iter().map(|e| e.rec.clone()).collect()
    }

    /// All entries ordered as `find_records` promises: unsubmitted first
    /// (insertion order), then by `submitted`.
    fn ordered(&self) -> impl Iterator<Item = &Entry> {
        self.unsubmitted
            .values()
            .chain(self.by_submitted.values())
            .filter_map(|id| self.records.get(id))
    }

    fn matching(&self, q: &Query) -> Vec<&Entry> {
        match q.msg_id_candidates() {
            Some(ids) => {
                let mut seen = HashSet::new();
                ids.into_iter()
                    .filter(|id| seen.insert(*id))
                    .filter_map(|id| self.records.get(id))
                    .filter(|e| q.matches(&e.rec))
                    .collect()
            }
            None => self.ordered().filter(|e| q.matches(&e.rec)).collect(),
        }
    }
}

impl TaskStore for MemoryStore {
    fn add_record(&mut self, mut rec: TaskRecord) -> Result<(), DbError> {
        let id: Arc<str> = Arc::from(rec.msg_id.as_str());
        let shadowed = !self.culled.set.is_empty() && self.culled.contains(&id);
        let seq = self.next_seq;
        let slot = match self.records.entry(id.clone()) {
            std::collections::hash_map::Entry::Occupied(_) => {
                return Err(DbError::Key(format!(
                    "Already have msg_id {}",
                    py_repr(&rec.msg_id)
                )));
            }
            std::collections::hash_map::Entry::Vacant(v) => v,
        };
        normalize_dates(&mut rec);
        let bytes = rec.buffer_bytes();
        let submitted = rec.submitted;
        slot.insert(Entry {
            id: id.clone(),
            shadowed,
            seq,
            bytes,
            rec,
        });
        self.next_seq += 1;
        self.index_insert(id, seq, submitted);
        self.buffer_bytes += bytes;
        self.maybe_cull();
        Ok(())
    }

    fn get_record(&self, msg_id: &str) -> Result<TaskRecord, DbError> {
        match self.records.get(msg_id) {
            Some(e) if !e.shadowed => Ok(e.rec.clone()),
            Some(_) => Err(culled_error(msg_id)),
            None if self.culled.contains(msg_id) => Err(culled_error(msg_id)),
            None => Err(DbError::Key(format!("No such msg_id {}", py_repr(msg_id)))),
        }
    }

    fn update_record(
        &mut self,
        msg_id: &str,
        f: &mut dyn FnMut(&mut TaskRecord),
    ) -> Result<(), DbError> {
        let entry = match self.records.get_mut(msg_id) {
            Some(e) if !e.shadowed => e,
            Some(_) => return Err(culled_error(msg_id)),
            None if self.culled.contains(msg_id) => return Err(culled_error(msg_id)),
            None => return Err(DbError::Key(msg_id.to_owned())),
        };
        let before = entry.rec.submitted;
        f(&mut entry.rec);
        if entry.rec.msg_id != msg_id {
            entry.rec.msg_id = msg_id.to_owned();
        }
        normalize_dates(&mut entry.rec);
        let after = entry.rec.submitted;
        let bytes = entry.rec.buffer_bytes();
        let old_bytes = std::mem::replace(&mut entry.bytes, bytes);
        let (seq, id) = (entry.seq, entry.id.clone());
        self.buffer_bytes = self.buffer_bytes - old_bytes + bytes;
        if before != after {
            self.index_remove(seq, before);
            self.index_insert(id, seq, after);
        }
        self.maybe_cull();
        Ok(())
    }

    fn drop_record(&mut self, msg_id: &str) -> Result<(), DbError> {
        match self.remove(msg_id) {
            Some(_) => Ok(()),
            None => Err(DbError::Key(msg_id.to_owned())),
        }
    }

    fn drop_matching_records(&mut self, q: &Query) -> Result<(), DbError> {
        let ids: Vec<Arc<str>> = self.matching(q).into_iter().map(|e| e.id.clone()).collect();
        for id in ids {
            self.remove(&id);
        }
        Ok(())
    }

    fn find_records(&self, q: &Query) -> Result<Vec<TaskRecord>, DbError> {
        let found = self.matching(q);
        if q.msg_id_candidates().is_some() {
            Ok(self.sorted(found))
        } else {
            Ok(found.into_iter().map(|e| e.rec.clone()).collect())
        }
    }

    /// Like stock DictDB, records without `submitted` are not listed.
    fn get_history(&self) -> Result<Vec<String>, DbError> {
        Ok(self
            .by_submitted
            .values()
            .map(|id| id.to_string())
            .collect())
    }

    /// True iff `get_record` would succeed.
    fn contains(&self, msg_id: &str) -> bool {
        self.records.get(msg_id).is_some_and(|e| !e.shadowed)
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    fn backend_name(&self) -> &'static str {
        "DictDB"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use chrono::TimeZone;
    use serde_json::json;

    fn at(sec: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + sec, 0).unwrap()
    }

    fn rec(id: &str, sec: i64, nbytes: usize) -> TaskRecord {
        TaskRecord {
            msg_id: id.into(),
            submitted: Some(at(sec)),
            buffers: if nbytes > 0 {
                vec![Bytes::from(vec![7u8; nbytes])]
            } else {
                Vec::new()
            },
            ..TaskRecord::default()
        }
    }

    fn limits(record_limit: usize, size_limit: usize) -> MemoryLimits {
        MemoryLimits {
            record_limit,
            size_limit,
            cull_fraction: 0.1,
        }
    }

    #[test]
    fn add_get_update_drop() {
        let mut db = MemoryStore::default();
        db.add_record(rec("a", 1, 3)).unwrap();
        let err = db.add_record(rec("a", 2, 0)).unwrap_err();
        assert_eq!(err.to_string(), "\"Already have msg_id 'a'\"");
        assert_eq!(db.get_record("a").unwrap().buffers.len(), 1);
        assert_eq!(db.total_buffer_bytes(), 3);

        db.update_record("a", &mut |r| {
            r.stdout = Some("hi".into());
            r.result_buffers = vec![Bytes::from_static(b"12345")];
            r.msg_id = "hijack".into();
        })
        .unwrap();
        let r = db.get_record("a").unwrap();
        assert_eq!(r.stdout.as_deref(), Some("hi"));
        assert_eq!(r.msg_id, "a");
        assert_eq!(db.total_buffer_bytes(), 8);

        let err = db.update_record("zz", &mut |_| {}).unwrap_err();
        assert_eq!(
            (err.ename(), err.to_string()),
            ("KeyError", "'zz'".to_string())
        );
        let err = db.get_record("zz").unwrap_err();
        assert_eq!(err.message(), "No such msg_id 'zz'");

        db.drop_record("a").unwrap();
        assert!(!db.contains("a"));
        assert_eq!(db.total_buffer_bytes(), 0);
        assert_eq!(db.drop_record("a").unwrap_err().to_string(), "'a'");
        assert!(db.is_empty());
    }

    #[test]
    fn returned_records_are_copies() {
        let mut db = MemoryStore::default();
        db.add_record(rec("a", 1, 0)).unwrap();
        let mut copy = db.get_record("a").unwrap();
        copy.stdout = Some("changed".into());
        assert_eq!(db.get_record("a").unwrap().stdout, None);
    }

    #[test]
    fn history_is_by_submitted_and_skips_unsubmitted() {
        let mut db = MemoryStore::default();
        db.add_record(rec("late", 30, 0)).unwrap();
        db.add_record(rec("early", 10, 0)).unwrap();
        db.add_record(TaskRecord::empty("iopub-first")).unwrap();
        db.add_record(rec("tie-1", 20, 0)).unwrap();
        db.add_record(rec("tie-2", 20, 0)).unwrap();
        assert_eq!(
            db.get_history().unwrap(),
            vec!["early", "tie-1", "tie-2", "late"]
        );
        // submitted set later (request after IOPub) moves it into history
        db.update_record("iopub-first", &mut |r| r.submitted = Some(at(15)))
            .unwrap();
        assert_eq!(
            db.get_history().unwrap(),
            vec!["early", "iopub-first", "tie-1", "tie-2", "late"]
        );
        let found: Vec<String> = db
            .find_records(&Query::all())
            .unwrap()
            .into_iter()
            .map(|r| r.msg_id)
            .collect();
        assert_eq!(found, db.get_history().unwrap());
    }

    #[test]
    fn cull_by_count_takes_oldest_fraction() {
        let mut db = MemoryStore::new(limits(20, 1 << 30));
        // inserted out of order: culling follows submitted, not insertion
        for i in (0..20).rev() {
            db.add_record(rec(&format!("t{i:02}"), i, 0)).unwrap();
        }
        assert_eq!(db.len(), 20);
        db.add_record(rec("t20", 20, 0)).unwrap();
        // 21 > 20: cull int(0.1 * 20) = 2 oldest
        assert_eq!(db.len(), 19);
        assert!(!db.contains("t00") && !db.contains("t01") && db.contains("t02"));
        let err = db.get_record("t00").unwrap_err();
        assert_eq!(err.ename(), "KeyError");
        assert_eq!(err.to_string(), "\"Record 't00' has been culled for size\"");
        let err = db.update_record("t01", &mut |_| {}).unwrap_err();
        assert_eq!(err.message(), "Record 't01' has been culled for size");
        // culled ids vanish from queries and history
        assert!(db
            .find_records(&Query::msg_id_in(["t00", "t02"]))
            .unwrap()
            .iter()
            .all(|r| r.msg_id == "t02"));
        assert_eq!(db.get_history().unwrap().len(), 19);
        assert_eq!(db.get_history().unwrap()[0], "t02");
    }

    #[test]
    fn count_culling_skips_unsubmitted_records() {
        let mut db = MemoryStore::new(limits(10, 1 << 30));
        db.add_record(TaskRecord::empty("orphan")).unwrap();
        for i in 0..10 {
            db.add_record(rec(&format!("t{i}"), i, 0)).unwrap();
        }
        // 11 > 10: one (int(0.1*10)) submitted record culled, orphan kept
        assert_eq!(db.len(), 10);
        assert!(db.contains("orphan"));
        assert!(!db.contains("t0") && db.contains("t1"));
    }

    #[test]
    fn count_culling_stays_bounded_where_stock_would_not() {
        // limit 5: stock culls int(0.5) = 0 records, i.e. never
        let mut db = MemoryStore::new(limits(5, 1 << 30));
        for i in 0..50 {
            db.add_record(rec(&format!("t{i}"), i, 0)).unwrap();
        }
        assert_eq!(db.len(), 5);
        assert_eq!(
            db.get_history().unwrap(),
            vec!["t45", "t46", "t47", "t48", "t49"]
        );
        // only orphans left to cull: the oldest orphan goes
        let mut db = MemoryStore::new(limits(3, 1 << 30));
        for i in 0..5 {
            db.add_record(TaskRecord::empty(&format!("o{i}"))).unwrap();
        }
        assert_eq!(db.len(), 3);
        assert!(!db.contains("o1") && db.contains("o2") && db.contains("o4"));
    }

    #[test]
    fn cull_by_size_until_below_ninety_percent() {
        let mut db = MemoryStore::new(limits(1000, 1000));
        for i in 0..10 {
            db.add_record(rec(&format!("t{i}"), i, 100)).unwrap();
        }
        assert_eq!(db.total_buffer_bytes(), 1000);
        assert_eq!(db.len(), 10, "at the limit is not over it");
        // 1250 > 1000: cull oldest until <= 900 -> t0..t3 go (1250-400=850)
        db.add_record(rec("big", 10, 250)).unwrap();
        assert_eq!(db.total_buffer_bytes(), 850);
        assert_eq!(
            db.get_history().unwrap(),
            vec!["t4", "t5", "t6", "t7", "t8", "t9", "big"]
        );
        assert_eq!(
            db.get_record("t3").unwrap_err().message(),
            "Record 't3' has been culled for size"
        );
        // growing a record by update also triggers size culling
        db.update_record("t9", &mut |r| {
            r.result_buffers = vec![Bytes::from(vec![0u8; 200])];
        })
        .unwrap();
        assert_eq!(db.total_buffer_bytes(), 850);
        assert_eq!(db.get_history().unwrap()[0], "t6");
    }

    #[test]
    fn oversized_record_culls_itself_last() {
        let mut db = MemoryStore::new(limits(1000, 100));
        db.add_record(rec("small", 0, 10)).unwrap();
        db.add_record(rec("huge", 1, 500)).unwrap();
        assert!(db.is_empty());
        assert_eq!(db.total_buffer_bytes(), 0);
        assert!(db.is_culled("huge") && db.is_culled("small"));
        // nothing left to cull: no hang
        db.add_record(TaskRecord {
            buffers: vec![Bytes::from(vec![0u8; 500])],
            ..TaskRecord::empty("orphan")
        })
        .unwrap();
        assert!(db.is_empty());
    }

    #[test]
    fn culled_id_memory_is_bounded() {
        let mut db = MemoryStore::with_culled_capacity(limits(10, 1 << 30), 3);
        for i in 0..30 {
            db.add_record(rec(&format!("t{i:02}"), i, 0)).unwrap();
        }
        assert_eq!(db.culled.set.len(), 3);
        assert_eq!(db.culled.order.len(), 3);
        assert!(db.is_culled("t19") && !db.is_culled("t16"));
        assert_eq!(
            db.get_record("t16").unwrap_err().message(),
            "No such msg_id 't16'"
        );
    }

    #[test]
    fn culled_id_readded_stays_hidden_like_stock() {
        let mut db = MemoryStore::new(limits(10, 1 << 30));
        for i in 0..11 {
            db.add_record(rec(&format!("t{i:02}"), i, 0)).unwrap();
        }
        assert!(db.is_culled("t00"));
        // late IOPub: the Hub's get_record fails, so it adds an empty record
        db.add_record(TaskRecord::empty("t00")).unwrap();
        assert!(!db.contains("t00"));
        assert!(db
            .get_record("t00")
            .unwrap_err()
            .message()
            .contains("culled"));
        assert_eq!(
            db.add_record(TaskRecord::empty("t00"))
                .unwrap_err()
                .message(),
            "Already have msg_id 't00'"
        );
    }

    #[test]
    fn find_and_drop_matching() {
        let mut db = MemoryStore::default();
        for i in 0..6 {
            let mut r = rec(&format!("t{i}"), 10 - i, 1);
            if i % 2 == 0 {
                r.completed = Some(at(100 + i));
                r.engine_uuid = Some("e1".into());
            }
            db.add_record(r).unwrap();
        }
        let done = Query::parse(&json!({"completed": {"$ne": null}})).unwrap();
        let ids: Vec<String> = db
            .find_records(&done)
            .unwrap()
            .into_iter()
            .map(|r| r.msg_id)
            .collect();
        assert_eq!(ids, vec!["t4", "t2", "t0"], "ordered by submitted");
        let by_id: Vec<String> = db
            .find_records(&Query::msg_id_in(["t0", "t5", "t0", "nope"]))
            .unwrap()
            .into_iter()
            .map(|r| r.msg_id)
            .collect();
        assert_eq!(by_id, vec!["t5", "t0"]);
        db.drop_matching_records(&done).unwrap();
        assert_eq!(db.len(), 3);
        assert_eq!(db.total_buffer_bytes(), 3);
        assert!(!db.is_culled("t0"), "dropping is not culling");
        assert_eq!(
            db.get_record("t0").unwrap_err().message(),
            "No such msg_id 't0'"
        );
    }

    #[test]
    fn dates_are_kept_to_microseconds() {
        let mut db = MemoryStore::default();
        let mut r = rec("a", 0, 0);
        r.received = Some(Utc.timestamp_opt(1_800_000_000, 123_456_789).unwrap());
        db.add_record(r).unwrap();
        let got = db.get_record("a").unwrap().received.unwrap();
        assert_eq!(got, Utc.timestamp_opt(1_800_000_000, 123_456_000).unwrap());
    }
}

#[cfg(test)]
mod perf {
    use super::*;

    fn run(label: &str, mut db: MemoryStore, updates: bool) {
        let n = 1_000_000u32;
        let ids: Vec<String> = (0..n)
            .map(|i| format!("{i:08x}-0000-4000-8000-000000000000"))
            .collect();
        let base = Utc::now();
        let t0 = std::time::Instant::now();
        for (i, id) in ids.iter().enumerate() {
            db.add_record(TaskRecord {
                msg_id: id.clone(),
                submitted: Some(base + chrono::Duration::microseconds(i as i64)),
                stdout: Some(String::new()),
                ..TaskRecord::default()
            })
            .unwrap();
            if updates {
                db.update_record(id, &mut |r| r.engine_uuid = Some("e".into()))
                    .unwrap();
                db.update_record(id, &mut |r| r.completed = r.submitted)
                    .unwrap();
                assert!(db.contains(id));
            }
        }
        let dt = t0.elapsed();
        println!(
            "{label}: {:.0} ns/task, len {}",
            dt.as_nanos() as f64 / f64::from(n),
            db.len()
        );
    }

    /// `cargo test --release -p oxipp-taskdb perf_hot_path -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn perf_hot_path() {
        let big = MemoryLimits {
            record_limit: usize::MAX,
            ..MemoryLimits::default()
        };
        let t0 = std::time::Instant::now();
        let mut base: HashMap<String, TaskRecord> = HashMap::new();
        for i in 0..1_000_000u32 {
            let id = format!("{i:08x}-0000-4000-8000-000000000000");
            base.insert(
                id.clone(),
                TaskRecord {
                    msg_id: id,
                    ..TaskRecord::default()
                },
            );
            if base.len() > 1024 {
                base.clear();
            }
        }
        println!(
            "baseline (format id + HashMap insert): {:.0} ns/task",
            t0.elapsed().as_nanos() as f64 / 1e6
        );
        run("add only, default limits", MemoryStore::default(), false);
        run(
            "add+2 updates+contains, default limits",
            MemoryStore::default(),
            true,
        );
        run("add only, no culling", MemoryStore::new(big), false);
        run(
            "add+2 updates+contains, no culling",
            MemoryStore::new(big),
            true,
        );
    }
}
