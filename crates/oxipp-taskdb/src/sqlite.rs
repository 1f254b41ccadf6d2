//! SQLite store with stock SQLiteDB's file layout.
//!
//! Same table (`ipython-tasks`), column order and declared types, so stock
//! `ipcontroller --sqlitedb` and this store can read each other's files:
//! dicts are JSON text, buffer lists a pickled `list[bytes]` BLOB (NULL when
//! empty), timestamps ISO text. We write timestamps as fixed-width UTC
//! (`2026-11-24T22:42:56.924289Z`) so SQL text comparison is time order;
//! stock's `isoformat()` text (`...+00:00`, fraction omitted when zero) is
//! read fine but compares slightly off in SQL for rows stock wrote.
//!
//! Writes are batched in a transaction committed by [`TaskStore::flush`]
//! (the Hub calls it every ~2 s, like stock's periodic commit) and on drop;
//! reads go through the same connection and so see uncommitted writes.
//!
//! Behaviour kept from stock SQLiteDB: `get_record` of a missing id is
//! `KeyError("No such msg: 'id'")`, a duplicate `add_record` is
//! `IntegrityError("UNIQUE constraint failed: ipython-tasks.msg_id")`,
//! `drop_record` of a missing id is a no-op, and `get_history` lists every
//! record (those without `submitted` first). Differences: `update_record`
//! of a missing id is an error (stock silently does nothing), and queries
//! support every operator the in-memory store does.

use std::path::Path;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{params_from_iter, Connection, OptionalExtension, Row};
use serde_json::{Map, Value};

use crate::dates::{parse_iso, sortable_year, to_sortable, Iso};
use crate::pickle;
use crate::query::Query;
use crate::record::{Cell, Column, Kind, TaskRecord};
use crate::sql::render;
use crate::store::{py_repr, DbError, TaskStore};

/// Declared SQL types, as stock `SQLiteDB._types`; a table whose
/// `PRAGMA table_info` differs is left alone and a suffixed name used.
fn declared_type(col: Column) -> &'static str {
    match col.kind() {
        // stock declares these two dict columns plain `text`
        Kind::Dict if matches!(col, Column::ExecuteResult | Column::Error) => "text",
        Kind::Dict => "dict text",
        Kind::Str => "text",
        Kind::Bufs => "bufs blob",
        Kind::Date => "timestamp",
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn corrupt(col: Column, what: &str) -> DbError {
    DbError::Sqlite {
        ename: "DatabaseError",
        message: format!("column {}: {what}", col.name()),
    }
}

/// SQLite task store (stock `SQLiteDB`).
pub struct SqliteStore {
    conn: Connection,
    table: String,
    ident: String,
    select_cols: String,
    /// Hot-path statements, built once (they are also prepared-cached).
    insert_sql: String,
    get_sql: String,
    delete_sql: String,
    contains_sql: String,
}

impl SqliteStore {
    /// Open (creating if needed) `path` and use `table`, or `table_1`,
    /// `table_2`, ... if a table of that name exists with another layout.
    pub fn open(path: &Path, table: &str) -> Result<Self, DbError> {
        SqliteStore::with_connection(Connection::open(path)?, table)
    }

    /// A private in-memory database (table `ipython-tasks`).
    pub fn in_memory() -> Result<Self, DbError> {
        SqliteStore::with_connection(Connection::open_in_memory()?, "ipython-tasks")
    }

    fn with_connection(conn: Connection, table: &str) -> Result<Self, DbError> {
        let mut name = table.to_owned();
        let mut i = 0;
        while !table_compatible(&conn, &name)? {
            i += 1;
            name = format!("{table}_{i}");
        }
        let ident = quote_ident(&name);
        let cols: Vec<String> = Column::ALL
            .iter()
            .map(|&c| {
                let pk = if c == Column::MsgId {
                    " PRIMARY KEY"
                } else {
                    ""
                };
                format!("{} {}{pk}", c.name(), declared_type(c))
            })
            .collect();
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {ident} ({})",
            cols.join(", ")
        ))?;
        let select_cols = Column::ALL
            .iter()
            .map(|c| quote_ident(c.name()))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(SqliteStore {
            insert_sql: format!(
                "INSERT INTO {ident} VALUES ({})",
                vec!["?"; Column::ALL.len()].join(", ")
            ),
            get_sql: format!("SELECT {select_cols} FROM {ident} WHERE msg_id = ?"),
            delete_sql: format!("DELETE FROM {ident} WHERE msg_id = ?"),
            contains_sql: format!("SELECT 1 FROM {ident} WHERE msg_id = ?"),
            conn,
            table: name,
            ident,
            select_cols,
        })
    }

    /// The table actually in use (after any `_N` fallback).
    pub fn table(&self) -> &str {
        &self.table
    }

    fn begin(&self) -> Result<(), DbError> {
        if self.conn.is_autocommit() {
            self.conn.execute_batch("BEGIN")?;
        }
        Ok(())
    }

    pub(crate) fn select(
        &self,
        where_sql: &str,
        params: &[SqlValue],
    ) -> Result<Vec<TaskRecord>, DbError> {
        let sql = format!(
            "SELECT {} FROM {} WHERE {where_sql} ORDER BY submitted ASC, rowid ASC",
            self.select_cols, self.ident
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params_from_iter(params.iter()))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(row_to_record(row)?);
        }
        Ok(out)
    }

    fn find(&self, q: &Query) -> Result<Vec<TaskRecord>, DbError> {
        let r = render(q)?;
        let mut recs = self.select(&r.where_sql, &r.params)?;
        if !r.exact {
            recs.retain(|rec| q.matches(rec));
        }
        Ok(recs)
    }

    /// Commit pending writes now.
    pub fn commit(&mut self) -> Result<(), DbError> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("COMMIT")?;
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// Types are compared case-insensitively: recent SQLite reports a declared
/// `text` as `TEXT`, which makes stock SQLiteDB reject its own table on
/// every restart and move to `ipython-tasks_1`, `_2`, ... (verified with
/// SQLite 3.40); we keep using the table.
fn table_compatible(conn: &Connection, table: &str) -> Result<bool, DbError> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({})", quote_ident(table)))?;
    let cols: Vec<(String, String)> = stmt
        .query_map([], |row| Ok((row.get(1)?, row.get(2)?)))?
        .collect::<Result<_, _>>()?;
    if cols.is_empty() {
        return Ok(true);
    }
    Ok(cols.len() == Column::ALL.len()
        && Column::ALL
            .iter()
            .zip(&cols)
            .all(|(c, (name, ty))| name == c.name() && ty.eq_ignore_ascii_case(declared_type(*c))))
}

fn cell_to_sql(col: Column, cell: Cell<'_>) -> Result<SqlValue, DbError> {
    Ok(match cell {
        Cell::Null => SqlValue::Null,
        Cell::Str(s) => SqlValue::Text(s.to_owned()),
        Cell::Date(d) => {
            if !sortable_year(&d) {
                return Err(DbError::Value(format!(
                    "{}: year {} is out of range",
                    col.name(),
                    chrono::Datelike::year(&d)
                )));
            }
            SqlValue::Text(to_sortable(&d))
        }
        Cell::Dict(m) => {
            SqlValue::Text(serde_json::to_string(m).map_err(|e| DbError::Value(e.to_string()))?)
        }
        Cell::Bufs([]) => SqlValue::Null,
        Cell::Bufs(b) => SqlValue::Blob(pickle::encode(b)),
    })
}

fn text_of(col: Column, v: ValueRef<'_>) -> Result<Option<String>, DbError> {
    Ok(match v {
        ValueRef::Null => None,
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            Some(String::from_utf8(t.to_vec()).map_err(|_| corrupt(col, "invalid UTF-8"))?)
        }
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
    })
}

fn date_of(col: Column, v: ValueRef<'_>) -> Result<Option<DateTime<Utc>>, DbError> {
    match text_of(col, v)? {
        None => Ok(None),
        Some(s) => match parse_iso(&s) {
            Iso::Date(d) => Ok(Some(d)),
            _ => Err(corrupt(col, &format!("bad timestamp {}", py_repr(&s)))),
        },
    }
}

fn dict_of(col: Column, v: ValueRef<'_>) -> Result<Option<Map<String, Value>>, DbError> {
    match text_of(col, v)? {
        None => Ok(None),
        Some(s) => match serde_json::from_str(&s) {
            Ok(Value::Object(m)) => Ok(Some(m)),
            Ok(Value::Null) => Ok(None),
            Ok(_) => Err(corrupt(col, "not a JSON object")),
            Err(e) => Err(corrupt(col, &e.to_string())),
        },
    }
}

fn bufs_of(col: Column, v: ValueRef<'_>) -> Result<Vec<Bytes>, DbError> {
    match v {
        ValueRef::Null => Ok(Vec::new()),
        ValueRef::Blob(b) | ValueRef::Text(b) => {
            pickle::decode(&Bytes::copy_from_slice(b)).map_err(|e| corrupt(col, &e))
        }
        _ => Err(corrupt(col, "buffers are not a BLOB")),
    }
}

fn row_to_record(row: &Row<'_>) -> Result<TaskRecord, DbError> {
    let mut rec = TaskRecord::default();
    for (i, col) in Column::ALL.into_iter().enumerate() {
        let v = row.get_ref(i)?;
        match col {
            Column::MsgId => rec.msg_id = text_of(col, v)?.unwrap_or_default(),
            Column::Header => rec.header = dict_of(col, v)?.map(Into::into),
            Column::Metadata => rec.metadata = dict_of(col, v)?.map(Into::into),
            Column::Content => rec.content = dict_of(col, v)?.map(Into::into),
            Column::Buffers => rec.buffers = bufs_of(col, v)?,
            Column::Submitted => rec.submitted = date_of(col, v)?,
            Column::ClientUuid => rec.client_uuid = text_of(col, v)?,
            Column::EngineUuid => rec.engine_uuid = text_of(col, v)?,
            Column::Started => rec.started = date_of(col, v)?,
            Column::Completed => rec.completed = date_of(col, v)?,
            Column::Resubmitted => rec.resubmitted = text_of(col, v)?,
            Column::Received => rec.received = date_of(col, v)?,
            Column::ResultHeader => rec.result_header = dict_of(col, v)?.map(Into::into),
            Column::ResultMetadata => rec.result_metadata = dict_of(col, v)?.map(Into::into),
            Column::ResultContent => rec.result_content = dict_of(col, v)?.map(Into::into),
            Column::ResultBuffers => rec.result_buffers = bufs_of(col, v)?,
            Column::Queue => rec.queue = text_of(col, v)?,
            Column::ExecuteInput => rec.execute_input = text_of(col, v)?,
            Column::ExecuteResult => rec.execute_result = dict_of(col, v)?,
            Column::Error => rec.error = dict_of(col, v)?,
            Column::Stdout => rec.stdout = text_of(col, v)?,
            Column::Stderr => rec.stderr = text_of(col, v)?,
            Column::Label => rec.label = text_of(col, v)?,
        }
    }
    Ok(rec)
}

/// Whether a column's stored form would change (dates compare at the
/// microsecond precision actually stored).
fn column_changed(a: &TaskRecord, b: &TaskRecord, col: Column) -> bool {
    match (a.cell(col), b.cell(col)) {
        (Cell::Null, Cell::Null) => false,
        (Cell::Str(x), Cell::Str(y)) => x != y,
        (Cell::Date(x), Cell::Date(y)) => to_sortable(&x) != to_sortable(&y),
        (Cell::Dict(x), Cell::Dict(y)) => x != y,
        (Cell::Bufs(x), Cell::Bufs(y)) => x != y,
        _ => true,
    }
}

impl TaskStore for SqliteStore {
    fn add_record(&mut self, rec: TaskRecord) -> Result<(), DbError> {
        let values = Column::ALL
            .into_iter()
            .map(|c| cell_to_sql(c, rec.cell(c)))
            .collect::<Result<Vec<_>, _>>()?;
        self.begin()?;
        let mut stmt = self.conn.prepare_cached(&self.insert_sql)?;
        stmt.execute(params_from_iter(values.iter()))?;
        Ok(())
    }

    fn get_record(&self, msg_id: &str) -> Result<TaskRecord, DbError> {
        let mut stmt = self.conn.prepare_cached(&self.get_sql)?;
        let mut rows = stmt.query([msg_id])?;
        match rows.next()? {
            Some(row) => row_to_record(row),
            None => Err(DbError::Key(format!("No such msg: {}", py_repr(msg_id)))),
        }
    }

    fn update_record(
        &mut self,
        msg_id: &str,
        f: &mut dyn FnMut(&mut TaskRecord),
    ) -> Result<(), DbError> {
        let before = self.get_record(msg_id)?;
        let mut after = before.clone();
        f(&mut after);
        after.msg_id = before.msg_id.clone();
        let mut sets = Vec::new();
        let mut values = Vec::new();
        for col in Column::ALL {
            if column_changed(&before, &after, col) {
                sets.push(format!("{} = ?", quote_ident(col.name())));
                values.push(cell_to_sql(col, after.cell(col))?);
            }
        }
        if sets.is_empty() {
            return Ok(());
        }
        values.push(SqlValue::Text(msg_id.to_owned()));
        self.begin()?;
        let sql = format!(
            "UPDATE {} SET {} WHERE msg_id = ?",
            self.ident,
            sets.join(", ")
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        stmt.execute(params_from_iter(values.iter()))?;
        Ok(())
    }

    fn drop_record(&mut self, msg_id: &str) -> Result<(), DbError> {
        self.begin()?;
        self.conn
            .prepare_cached(&self.delete_sql)?
            .execute([msg_id])?;
        Ok(())
    }

    fn drop_matching_records(&mut self, q: &Query) -> Result<(), DbError> {
        let r = render(q)?;
        self.begin()?;
        if r.exact {
            let sql = format!("DELETE FROM {} WHERE {}", self.ident, r.where_sql);
            self.conn
                .prepare_cached(&sql)?
                .execute(params_from_iter(r.params.iter()))?;
        } else {
            let doomed: Vec<String> = self
                .select(&r.where_sql, &r.params)?
                .into_iter()
                .filter(|rec| q.matches(rec))
                .map(|rec| rec.msg_id)
                .collect();
            let mut stmt = self.conn.prepare_cached(&self.delete_sql)?;
            for id in doomed {
                stmt.execute([id])?;
            }
        }
        Ok(())
    }

    fn find_records(&self, q: &Query) -> Result<Vec<TaskRecord>, DbError> {
        self.find(q)
    }

    /// Every record, like stock SQLiteDB (nulls first), ties by insertion.
    fn get_history(&self) -> Result<Vec<String>, DbError> {
        let sql = format!(
            "SELECT msg_id FROM {} ORDER BY submitted ASC, rowid ASC",
            self.ident
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let ids = stmt
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    fn contains(&self, msg_id: &str) -> bool {
        self.conn
            .prepare_cached(&self.contains_sql)
            .and_then(|mut s| s.query_row([msg_id], |_| Ok(())).optional())
            .map(|found| found.is_some())
            .unwrap_or(false)
    }

    fn len(&self) -> usize {
        let sql = format!("SELECT COUNT(*) FROM {}", self.ident);
        self.conn
            .query_row(&sql, [], |row| row.get::<_, i64>(0))
            .map(|n| usize::try_from(n).unwrap_or(0))
            .unwrap_or(0)
    }

    fn flush(&mut self) -> Result<(), DbError> {
        self.commit()
    }

    fn backend_name(&self) -> &'static str {
        "SQLiteDB"
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        let _ = self.commit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;
    use std::path::PathBuf;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let p = std::env::temp_dir()
                .join(format!("oxipp-taskdb-{tag}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dict(v: Value) -> crate::record::Dict {
        obj(v).into()
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn at(sec: i64, micros: u32) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + sec, micros * 1000)
            .unwrap()
    }

    fn full_record(id: &str) -> TaskRecord {
        TaskRecord {
            msg_id: id.into(),
            header: Some(dict(
                json!({"msg_id": id, "date": "2027-01-15T08:00:00.123456Z",
                                    "msg_type": "apply_request", "nested": {"x": [1, 2.5, null]}}),
            )),
            metadata: Some(dict(
                json!({"label": "ünïcode ☃", "after": [], "follow": []}),
            )),
            content: Some(dict(json!({}))),
            buffers: vec![
                Bytes::from_static(b"\x00\x00pickled\x00f\x80\x05"),
                Bytes::new(),
                Bytes::from((0..=255u8).cycle().take(70_000).collect::<Vec<u8>>()),
            ],
            submitted: Some(at(0, 123_456)),
            client_uuid: Some("client-uuid".into()),
            engine_uuid: Some("engine-uuid".into()),
            started: Some(at(1, 0)),
            completed: Some(at(2, 1)),
            resubmitted: Some("other-id".into()),
            received: Some(at(3, 999_999)),
            result_header: Some(dict(json!({"status": "ok"}))),
            result_metadata: Some(dict(json!({"engine": "engine-uuid"}))),
            result_content: Some(dict(json!({"status": "ok"}))),
            result_buffers: vec![Bytes::from_static(b"\x00"), Bytes::from_static(b"r\x00s")],
            queue: Some("task".into()),
            execute_input: Some("a = 1\nprint('\\x00')".into()),
            execute_result: Some(obj(json!({"data": {"text/plain": "1"}}))),
            error: Some(obj(json!({"ename": "ZeroDivisionError"}))),
            stdout: Some("out\n".into()),
            stderr: Some(String::new()),
            label: Some("my-label".into()),
        }
    }

    #[test]
    fn round_trips_every_column() {
        let mut db = SqliteStore::in_memory().unwrap();
        let rec = full_record("a");
        db.add_record(rec.clone()).unwrap();
        assert_eq!(db.get_record("a").unwrap(), rec);
        let empty = TaskRecord::empty("b");
        db.add_record(empty.clone()).unwrap();
        assert_eq!(db.get_record("b").unwrap(), empty);
        assert_eq!(db.len(), 2);
        assert!(db.contains("a") && !db.contains("c"));
        // the blob really is a pickle and dates fixed-width text
        let (blob, sub): (Vec<u8>, String) = db
            .connection()
            .query_row(
                "SELECT result_buffers, submitted FROM \"ipython-tasks\" WHERE msg_id='a'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(&blob[..2], b"\x80\x04");
        assert_eq!(sub, "2027-01-15T08:00:00.123456Z");
    }

    #[test]
    fn errors_follow_stock_sqlitedb() {
        let mut db = SqliteStore::in_memory().unwrap();
        db.add_record(TaskRecord::empty("a")).unwrap();
        let e = db.add_record(TaskRecord::empty("a")).unwrap_err();
        assert_eq!(e.ename(), "IntegrityError");
        assert_eq!(
            e.to_string(),
            "UNIQUE constraint failed: ipython-tasks.msg_id"
        );
        let e = db.get_record("zz").unwrap_err();
        assert_eq!(e.to_string(), "\"No such msg: 'zz'\"");
        assert!(db
            .update_record("zz", &mut |_| {})
            .unwrap_err()
            .is_key_error());
        db.drop_record("zz").unwrap();
        db.drop_record("a").unwrap();
        assert!(db.is_empty());
    }

    #[test]
    fn update_changes_only_what_the_closure_changes() {
        let mut db = SqliteStore::in_memory().unwrap();
        db.add_record(full_record("a")).unwrap();
        db.update_record("a", &mut |r| {
            r.stdout.get_or_insert_with(String::new).push_str("more");
            r.result_buffers.clear();
            r.completed = None;
            r.msg_id = "ignored".into();
        })
        .unwrap();
        let got = db.get_record("a").unwrap();
        let mut want = full_record("a");
        want.stdout = Some("out\nmore".into());
        want.result_buffers.clear();
        want.completed = None;
        assert_eq!(got, want);
        assert!(!db.contains("ignored"));
        db.update_record("a", &mut |_| {}).unwrap();
        assert_eq!(db.get_record("a").unwrap(), want);
    }

    #[test]
    fn history_lists_all_nulls_first() {
        let mut db = SqliteStore::in_memory().unwrap();
        for (id, sec) in [
            ("c", Some(3)),
            ("x", None),
            ("a", Some(1)),
            ("b1", Some(2)),
            ("b2", Some(2)),
        ] {
            db.add_record(TaskRecord {
                msg_id: id.into(),
                submitted: sec.map(|s| at(s, 0)),
                ..TaskRecord::default()
            })
            .unwrap();
        }
        assert_eq!(db.get_history().unwrap(), vec!["x", "a", "b1", "b2", "c"]);
        let q = Query::parse(&json!({"submitted": {"$gt": at(1, 0).to_rfc3339()}})).unwrap();
        let ids: Vec<String> = db
            .find_records(&q)
            .unwrap()
            .into_iter()
            .map(|r| r.msg_id)
            .collect();
        assert_eq!(ids, vec!["b1", "b2", "c"]);
        db.drop_matching_records(
            &Query::parse(&json!({"submitted": {"$lte": at(2, 0).to_rfc3339()}})).unwrap(),
        )
        .unwrap();
        assert_eq!(db.get_history().unwrap(), vec!["x", "c"]);
    }

    #[test]
    fn reopen_file_and_uncommitted_visibility() {
        let dir = TempDir::new("reopen");
        let path = dir.0.join("tasks.db");
        let mut db = SqliteStore::open(&path, "ipython-tasks").unwrap();
        db.add_record(full_record("a")).unwrap();
        // same connection sees the uncommitted row; another does not yet
        assert!(db.contains("a"));
        let other = SqliteStore::open(&path, "ipython-tasks");
        // the writer holds the lock, so opening may fail or see nothing
        if let Ok(other) = other {
            assert!(!other.contains("a"));
        }
        db.flush().unwrap();
        let other = SqliteStore::open(&path, "ipython-tasks").unwrap();
        assert_eq!(other.get_record("a").unwrap(), full_record("a"));
        drop(other);
        db.add_record(TaskRecord::empty("b")).unwrap();
        drop(db); // commits
        let db = SqliteStore::open(&path, "ipython-tasks").unwrap();
        assert_eq!(db.table(), "ipython-tasks");
        assert_eq!(db.get_history().unwrap(), vec!["b", "a"]);
        assert_eq!(db.get_record("a").unwrap(), full_record("a"));
    }

    #[test]
    fn incompatible_table_falls_back_to_suffixed_names() {
        let dir = TempDir::new("fallback");
        let path = dir.0.join("tasks.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE 'ipython-tasks' (msg_id text PRIMARY KEY, header text);
                 INSERT INTO 'ipython-tasks' VALUES ('old', '{}');
                 CREATE TABLE 'ipython-tasks_1' (msg_id text PRIMARY KEY, header dict text, metadata dict text,
                   content dict text, buffers bufs blob, submitted timestamp, client_uuid text,
                   engine_uuid text, started timestamp, completed timestamp, resubmitted text,
                   received timestamp, result_header dict text, result_metadata dict text,
                   result_content dict text, result_buffers bufs blob, queue text,
                   execute_input text, execute_result text, error text, stdout text,
                   stderr text, label INTEGER);",
            )
            .unwrap();
        }
        let mut db = SqliteStore::open(&path, "ipython-tasks").unwrap();
        assert_eq!(db.table(), "ipython-tasks_2");
        db.add_record(TaskRecord::empty("new")).unwrap();
        drop(db);
        let db = SqliteStore::open(&path, "ipython-tasks").unwrap();
        assert_eq!(db.table(), "ipython-tasks_2");
        assert_eq!(db.get_history().unwrap(), vec!["new"]);
        // the old table is untouched
        let n: i64 = db
            .connection()
            .query_row("SELECT COUNT(*) FROM 'ipython-tasks'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn reads_rows_written_by_stock_sqlitedb() {
        let db = SqliteStore::in_memory().unwrap();
        // what stock SQLiteDB.add_record stores: isoformat() dates, json.dumps
        // dicts and pickle.dumps(list, -1) buffers
        let pickled: &[u8] =
            b"\x80\x05\x95\x0f\x00\x00\x00\x00\x00\x00\x00]\x94(C\x02ab\x94C\x00\x94h\x02e.";
        db.connection()
            .execute(
                "INSERT INTO 'ipython-tasks' (msg_id, header, buffers, submitted, completed, stdout, execute_result)
                 VALUES ('s', ?1, ?2, '2027-01-15T08:00:00.123456+00:00', '2027-01-15T09:00:00+01:00', '', ?3)",
                rusqlite::params![
                    r#"{"date": "2027-01-15T08:00:00.123456+00:00", "msg_id": "s"}"#,
                    pickled,
                    r#"{"data": {"text/plain": "3"}}"#
                ],
            )
            .unwrap();
        let r = db.get_record("s").unwrap();
        assert_eq!(
            r.submitted.unwrap().to_rfc3339(),
            "2027-01-15T08:00:00.123456+00:00"
        );
        assert_eq!(
            r.completed.unwrap().to_rfc3339(),
            "2027-01-15T08:00:00+00:00"
        );
        assert_eq!(
            r.buffers,
            vec![Bytes::from_static(b"ab"), Bytes::new(), Bytes::new()]
        );
        assert_eq!(r.header.unwrap()["msg_id"], json!("s"));
        assert_eq!(r.execute_result.unwrap()["data"]["text/plain"], json!("3"));
        assert_eq!(r.stdout.as_deref(), Some(""));
    }

    #[test]
    fn in_with_null_is_rejected() {
        let db = SqliteStore::in_memory().unwrap();
        let q =
            Query::parse(&json!({"completed": {"$in": [null, "2027-01-01T00:00:00Z"]}})).unwrap();
        let e = db.find_records(&q).unwrap_err();
        assert_eq!(e.ename(), "ValueError");
    }

    /// Writes `$OXIPP_TASKDB_INTEROP` for a manual check with stock Python:
    /// `SQLiteDB(location=dir, filename=name).get_record('interop')`.
    #[test]
    #[ignore]
    fn write_interop_file() {
        let Ok(path) = std::env::var("OXIPP_TASKDB_INTEROP") else {
            return;
        };
        let mut db = SqliteStore::open(Path::new(&path), "ipython-tasks").unwrap();
        db.add_record(full_record("interop")).unwrap();
        db.flush().unwrap();
    }
}
