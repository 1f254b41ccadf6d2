//! The Hub's task database: one record per request `msg_id`, queried with
//! the Mongo-style language clients send in `db_request`.
//!
//! Sans-IO: nothing here touches sockets. Three backends mirror the stock
//! `ipyparallel.controller` ones: [`MemoryStore`] (DictDB, the default),
//! [`SqliteStore`] (SQLiteDB) and [`NoDb`] (NoDB). Error values carry the
//! Python exception name and `str()` stock clients would receive.

mod dates;
mod glob;
mod memory;
mod nodb;
mod pickle;
mod query;
mod record;
mod sql;
mod sqlite;
mod store;

#[cfg(test)]
mod agreement_tests;

pub use dates::{parse_date, to_iso};
pub use memory::{MemoryLimits, MemoryStore, DEFAULT_CULLED_ID_CAPACITY};
pub use nodb::NoDb;
pub use query::Query;
pub use record::{Column, Dict, TaskRecord};
pub use sqlite::SqliteStore;
pub use store::{py_repr, DbError, TaskStore};
