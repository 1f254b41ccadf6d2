//! The backend-neutral store interface and its error type.

use crate::query::Query;
use crate::record::TaskRecord;

/// A failure the stock Hub would report to the client as a wrapped Python
/// exception.
///
/// `Display` is exactly what Python's `str(exc)` gives for the stock
/// exception, i.e. the `evalue` of the error reply. Note that `str()` of a
/// Python `KeyError` is the `repr()` of its message, so
/// `DbError::Key("No such msg_id 'x'")` displays as `"No such msg_id 'x'"`
/// (with the double quotes), exactly as stock clients receive it. Use
/// [`DbError::message`] for the bare text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    /// Python `KeyError(message)`.
    #[error("{}", py_repr(.0))]
    Key(String),
    /// Python `KeyError` for the record of msg_id `.0`, culled for size: the message is
    /// only built when shown. (Replies to tasks culled while in flight, every task of a big
    /// map, update their record, get this and drop it: a formatted `Key` cost ~2% of the
    /// controller's CPU there.)
    #[error("{}", py_repr(&culled_message(.0)))]
    Culled(String),
    /// Python `ValueError(message)`.
    #[error("{0}")]
    Value(String),
    /// Python `TypeError(message)`.
    #[error("{0}")]
    Type(String),
    /// The stock `NoData(KeyError)` raised by every NoDB read. Its `__str__`
    /// is overridden; because of a missing `+` in the stock source only the
    /// first sentence (with its trailing space) is returned.
    #[error("NoDB backend doesn't store any data. ")]
    NoData,
    /// An error from SQLite itself (Python's `sqlite3` raises
    /// `IntegrityError` / `OperationalError` / `DatabaseError`).
    #[error("{message}")]
    Sqlite {
        ename: &'static str,
        message: String,
    },
}

impl DbError {
    /// The Python exception class name, for the `ename` of an error reply.
    pub fn ename(&self) -> &'static str {
        match self {
            DbError::Key(_) | DbError::Culled(_) => "KeyError",
            DbError::Value(_) => "ValueError",
            DbError::Type(_) => "TypeError",
            DbError::NoData => "NoData",
            DbError::Sqlite { ename, .. } => ename,
        }
    }

    /// The message without the `repr()` quoting that `KeyError` adds.
    pub fn message(&self) -> String {
        match self {
            DbError::Key(m) | DbError::Value(m) | DbError::Type(m) => m.clone(),
            DbError::Culled(msg_id) => culled_message(msg_id),
            DbError::Sqlite { message, .. } => message.clone(),
            DbError::NoData => self.to_string(),
        }
    }

    /// True for the errors the stock Hub catches as `KeyError` (missing,
    /// culled, NoDB), which it treats as "no such record yet".
    pub fn is_key_error(&self) -> bool {
        matches!(self, DbError::Key(_) | DbError::Culled(_) | DbError::NoData)
    }
}

fn culled_message(msg_id: &str) -> String {
    format!("Record {} has been culled for size", py_repr(msg_id))
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        let ename = match e.sqlite_error_code() {
            Some(ErrorCode::ConstraintViolation) => "IntegrityError",
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => "DatabaseError",
            _ => "OperationalError",
        };
        let message = match &e {
            rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
            other => other.to_string(),
        };
        DbError::Sqlite { ename, message }
    }
}

pub use oxipp_wire::errors::{py_repr, py_repr_list};

/// A task-record database, as used by the Hub.
///
/// Backends differ in the same ways the stock ones do (error wording, which
/// records `get_history` lists, whether dropping a missing record is an
/// error); each implementation documents its deviations.
pub trait TaskStore: Send {
    /// Insert a new record; an existing `msg_id` is an error.
    fn add_record(&mut self, rec: TaskRecord) -> Result<(), DbError>;
    /// A copy of one record; missing (or culled) is a `KeyError`.
    fn get_record(&self, msg_id: &str) -> Result<TaskRecord, DbError>;
    /// Apply a change in place; missing -> error. The closure must not
    /// change `msg_id` (any change to it is discarded).
    fn update_record(
        &mut self,
        msg_id: &str,
        f: &mut dyn FnMut(&mut TaskRecord),
    ) -> Result<(), DbError>;
    /// Remove one record. A missing id is `KeyError(msg_id)` for
    /// [`MemoryStore`](crate::MemoryStore) (stock DictDB) and silently
    /// ignored by the SQLite and NoDB stores (as stock).
    fn drop_record(&mut self, msg_id: &str) -> Result<(), DbError>;
    /// Remove every record the query matches (never an error for "none").
    fn drop_matching_records(&mut self, q: &Query) -> Result<(), DbError>;
    /// Full copies of the matching records ordered by `submitted`
    /// (records without one first), then by insertion order.
    fn find_records(&self, q: &Query) -> Result<Vec<TaskRecord>, DbError>;
    /// `msg_id`s ordered by `submitted`, ascending.
    fn get_history(&self) -> Result<Vec<String>, DbError>;
    /// Whether `get_record` would succeed (never true for NoDB).
    fn contains(&self, msg_id: &str) -> bool;
    /// Records held (culled records excluded; 0 on SQLite errors).
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Called by the Hub about every 2 s (SQLite commits here; others no-op).
    fn flush(&mut self) -> Result<(), DbError> {
        Ok(())
    }
    fn backend_name(&self) -> &'static str;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_matches_python() {
        assert_eq!(py_repr("x"), "'x'");
        assert_eq!(py_repr("a'b"), "\"a'b\"");
        assert_eq!(py_repr("a\"b'c"), "'a\"b\\'c'");
        assert_eq!(py_repr("é\x01\u{2028}\n\\"), "'é\\x01\\u2028\\n\\\\'");
        assert_eq!(py_repr_list(&["a", "b"]), "['a', 'b']");
    }

    #[test]
    fn key_error_display_is_python_str() {
        let e = DbError::Key("Record 'xyz' has been culled for size".into());
        assert_eq!(e.to_string(), "\"Record 'xyz' has been culled for size\"");
        assert_eq!(e.message(), "Record 'xyz' has been culled for size");
        assert_eq!(e.ename(), "KeyError");
        assert_eq!(DbError::Key("abc".into()).to_string(), "'abc'");
        let culled = DbError::Culled("xyz".into());
        assert_eq!(culled.to_string(), e.to_string());
        assert_eq!(culled.message(), e.message());
        assert_eq!(culled.ename(), "KeyError");
        assert!(culled.is_key_error());
        assert_eq!(DbError::NoData.ename(), "NoData");
        assert_eq!(
            DbError::NoData.to_string(),
            "NoDB backend doesn't store any data. "
        );
        assert!(DbError::NoData.is_key_error());
    }
}
