//! The stock `NoDB` black hole: writes vanish, reads fail.
//!
//! Reads fail with `NoData` (a `KeyError` subclass) so that the Hub's
//! "IOPub arrived first?" probes fall through to `add_record`, and client
//! requests that need stored data (`db_query`, `hub_history`, `resubmit`,
//! foreign `get_result`) get an error reply.

use crate::query::Query;
use crate::record::TaskRecord;
use crate::store::{DbError, TaskStore};

#[derive(Clone, Copy, Debug, Default)]
pub struct NoDb;

impl NoDb {
    pub fn new() -> Self {
        NoDb
    }
}

impl TaskStore for NoDb {
    fn add_record(&mut self, _rec: TaskRecord) -> Result<(), DbError> {
        Ok(())
    }

    fn get_record(&self, _msg_id: &str) -> Result<TaskRecord, DbError> {
        Err(DbError::NoData)
    }

    fn update_record(
        &mut self,
        _msg_id: &str,
        _f: &mut dyn FnMut(&mut TaskRecord),
    ) -> Result<(), DbError> {
        Ok(())
    }

    fn drop_record(&mut self, _msg_id: &str) -> Result<(), DbError> {
        Ok(())
    }

    fn drop_matching_records(&mut self, _q: &Query) -> Result<(), DbError> {
        Ok(())
    }

    fn find_records(&self, _q: &Query) -> Result<Vec<TaskRecord>, DbError> {
        Err(DbError::NoData)
    }

    fn get_history(&self) -> Result<Vec<String>, DbError> {
        Err(DbError::NoData)
    }

    fn contains(&self, _msg_id: &str) -> bool {
        false
    }

    fn len(&self) -> usize {
        0
    }

    fn backend_name(&self) -> &'static str {
        "NoDB"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_nothing_and_reads_fail_like_stock() {
        let mut db = NoDb::new();
        db.add_record(TaskRecord::empty("a")).unwrap();
        db.add_record(TaskRecord::empty("a")).unwrap();
        db.update_record("a", &mut |r| r.stdout = Some("x".into()))
            .unwrap();
        db.drop_record("a").unwrap();
        db.drop_matching_records(&Query::all()).unwrap();
        assert!(!db.contains("a"));
        assert_eq!(db.len(), 0);
        for err in [
            db.get_record("a").unwrap_err(),
            db.find_records(&Query::all()).unwrap_err(),
            db.get_history().unwrap_err(),
        ] {
            assert_eq!(err.ename(), "NoData");
            assert_eq!(err.to_string(), "NoDB backend doesn't store any data. ");
            assert!(err.is_key_error());
        }
    }
}
