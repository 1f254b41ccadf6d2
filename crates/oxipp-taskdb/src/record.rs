//! Task records and their columns.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::dates::to_iso;
use crate::store::{py_repr_list, DbError};

/// One column of a task record, in the stock order (which is also the
/// SQLite column order, so it must not be rearranged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Column {
    MsgId,
    Header,
    Metadata,
    Content,
    Buffers,
    Submitted,
    ClientUuid,
    EngineUuid,
    Started,
    Completed,
    Resubmitted,
    Received,
    ResultHeader,
    ResultMetadata,
    ResultContent,
    ResultBuffers,
    Queue,
    ExecuteInput,
    ExecuteResult,
    Error,
    Stdout,
    Stderr,
    Label,
}

/// How a column's values are typed, which decides how queries compare them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Date,
    Dict,
    Bufs,
}

impl Column {
    pub const ALL: [Column; 23] = [
        Column::MsgId,
        Column::Header,
        Column::Metadata,
        Column::Content,
        Column::Buffers,
        Column::Submitted,
        Column::ClientUuid,
        Column::EngineUuid,
        Column::Started,
        Column::Completed,
        Column::Resubmitted,
        Column::Received,
        Column::ResultHeader,
        Column::ResultMetadata,
        Column::ResultContent,
        Column::ResultBuffers,
        Column::Queue,
        Column::ExecuteInput,
        Column::ExecuteResult,
        Column::Error,
        Column::Stdout,
        Column::Stderr,
        Column::Label,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Column::MsgId => "msg_id",
            Column::Header => "header",
            Column::Metadata => "metadata",
            Column::Content => "content",
            Column::Buffers => "buffers",
            Column::Submitted => "submitted",
            Column::ClientUuid => "client_uuid",
            Column::EngineUuid => "engine_uuid",
            Column::Started => "started",
            Column::Completed => "completed",
            Column::Resubmitted => "resubmitted",
            Column::Received => "received",
            Column::ResultHeader => "result_header",
            Column::ResultMetadata => "result_metadata",
            Column::ResultContent => "result_content",
            Column::ResultBuffers => "result_buffers",
            Column::Queue => "queue",
            Column::ExecuteInput => "execute_input",
            Column::ExecuteResult => "execute_result",
            Column::Error => "error",
            Column::Stdout => "stdout",
            Column::Stderr => "stderr",
            Column::Label => "label",
        }
    }

    pub fn parse(name: &str) -> Option<Column> {
        Column::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Validate the `keys` of a `db_request`, with the stock SQLite wording
    /// (`KeyError("Bad record key(s): ['foo']")`) for unknown names.
    pub fn parse_keys<S: AsRef<str>>(keys: &[S]) -> Result<Vec<Column>, DbError> {
        let bad: Vec<&str> = keys
            .iter()
            .map(AsRef::as_ref)
            .filter(|k| Column::parse(k).is_none())
            .collect();
        if !bad.is_empty() {
            return Err(DbError::Key(format!(
                "Bad record key(s): {}",
                py_repr_list(&bad)
            )));
        }
        Ok(keys
            .iter()
            .filter_map(|k| Column::parse(k.as_ref()))
            .collect())
    }

    pub(crate) fn kind(self) -> Kind {
        match self {
            Column::Header
            | Column::Metadata
            | Column::Content
            | Column::ResultHeader
            | Column::ResultMetadata
            | Column::ResultContent
            | Column::ExecuteResult
            | Column::Error => Kind::Dict,
            Column::Buffers | Column::ResultBuffers => Kind::Bufs,
            Column::Submitted | Column::Started | Column::Completed | Column::Received => {
                Kind::Date
            }
            Column::MsgId
            | Column::ClientUuid
            | Column::EngineUuid
            | Column::Resubmitted
            | Column::Queue
            | Column::ExecuteInput
            | Column::Stdout
            | Column::Stderr
            | Column::Label => Kind::Str,
        }
    }

    /// `submitted`, `started`, `completed`, `received`.
    pub fn is_date(self) -> bool {
        self.kind() == Kind::Date
    }

    /// `buffers` and `result_buffers`, which travel as frames, not JSON.
    pub fn is_buffers(self) -> bool {
        self.kind() == Kind::Bufs
    }
}

impl std::fmt::Display for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Column {
    type Err = DbError;
    fn from_str(s: &str) -> Result<Self, DbError> {
        Column::parse(s).ok_or_else(|| DbError::Key(s.to_owned()))
    }
}

/// A JSON object column taken from a message frame: kept as the bytes that arrived and
/// parsed only when something reads it (a query, `get_record`). The Hub records every request
/// and reply but, with the default 1,024-record store, culls almost all of them unread, so
/// parsing (and later freeing) six JSON trees per task was most of the cost of recording.
///
/// Built from a map instead ([`Dict::from`]), it simply holds the map. A raw frame that turns
/// out not to be a JSON object reads as an empty object.
#[derive(Default)]
pub struct Dict {
    raw: Option<Bytes>,
    map: std::cell::OnceCell<Map<String, Value>>,
}

impl Dict {
    /// A dict backed by a JSON frame, or `None` when the frame plainly is not a JSON object
    /// (so that a column that could not be decoded stays null, as with an eager parse).
    pub fn from_raw(raw: Bytes) -> Option<Dict> {
        let t = raw.trim_ascii();
        if t.first() != Some(&b'{') || t.last() != Some(&b'}') {
            return None;
        }
        Some(Dict {
            raw: Some(raw),
            map: std::cell::OnceCell::new(),
        })
    }

    /// The decoded object (parsed on first use).
    pub fn map(&self) -> &Map<String, Value> {
        self.map.get_or_init(|| match &self.raw {
            Some(raw) => match serde_json::from_slice::<Value>(raw) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            },
            None => Map::new(),
        })
    }

    pub fn into_map(mut self) -> Map<String, Value> {
        self.map();
        self.map.take().unwrap_or_default()
    }

    /// The frame this dict was taken from, if it was.
    pub fn raw(&self) -> Option<&Bytes> {
        self.raw.as_ref()
    }
}

impl From<Map<String, Value>> for Dict {
    fn from(m: Map<String, Value>) -> Self {
        Dict {
            raw: None,
            map: std::cell::OnceCell::from(m),
        }
    }
}

impl Clone for Dict {
    /// Cheap for a raw-backed dict: the frame is shared and re-parsed if the copy is read.
    fn clone(&self) -> Self {
        match &self.raw {
            Some(raw) => Dict {
                raw: Some(raw.clone()),
                map: std::cell::OnceCell::new(),
            },
            None => Dict::from(self.map().clone()),
        }
    }
}

impl std::ops::Deref for Dict {
    type Target = Map<String, Value>;
    fn deref(&self) -> &Map<String, Value> {
        self.map()
    }
}

impl PartialEq for Dict {
    fn eq(&self, other: &Dict) -> bool {
        self.map() == other.map()
    }
}

impl std::fmt::Debug for Dict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.map().fmt(f)
    }
}

/// One task record. Dates are UTC; JSON dicts are serde_json maps (dates
/// inside them stay strings, exactly as they arrived on the wire); the dicts
/// of the request and reply messages are [`Dict`]s, decoded when read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskRecord {
    pub msg_id: String,
    pub header: Option<Dict>,
    pub metadata: Option<Dict>,
    pub content: Option<Dict>,
    pub buffers: Vec<Bytes>,
    pub submitted: Option<DateTime<Utc>>,
    pub client_uuid: Option<String>,
    pub engine_uuid: Option<String>,
    pub started: Option<DateTime<Utc>>,
    pub completed: Option<DateTime<Utc>>,
    pub resubmitted: Option<String>,
    pub received: Option<DateTime<Utc>>,
    pub result_header: Option<Dict>,
    pub result_metadata: Option<Dict>,
    pub result_content: Option<Dict>,
    pub result_buffers: Vec<Bytes>,
    pub queue: Option<String>,
    pub execute_input: Option<String>,
    pub execute_result: Option<Map<String, Value>>,
    pub error: Option<Map<String, Value>>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub label: Option<String>,
}

/// A borrowed, typed view of one column value (used by query matching and
/// the SQLite writer, so neither has to build JSON).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Cell<'a> {
    Null,
    Str(&'a str),
    Date(DateTime<Utc>),
    Dict(&'a Map<String, Value>),
    Bufs(&'a [Bytes]),
}

fn str_cell(s: &Option<String>) -> Cell<'_> {
    s.as_deref().map_or(Cell::Null, Cell::Str)
}

fn date_cell(d: &Option<DateTime<Utc>>) -> Cell<'_> {
    d.map_or(Cell::Null, Cell::Date)
}

fn dict_cell(d: &Option<Map<String, Value>>) -> Cell<'_> {
    d.as_ref().map_or(Cell::Null, Cell::Dict)
}

fn lazy_cell(d: &Option<Dict>) -> Cell<'_> {
    d.as_ref().map_or(Cell::Null, |d| Cell::Dict(d.map()))
}

impl TaskRecord {
    /// A record with every column null (stdout/stderr empty), as the Hub's
    /// `empty_record()` makes when IOPub arrives before the request.
    pub fn empty(msg_id: &str) -> Self {
        TaskRecord {
            msg_id: msg_id.to_owned(),
            stdout: Some(String::new()),
            stderr: Some(String::new()),
            ..TaskRecord::default()
        }
    }

    pub(crate) fn cell(&self, col: Column) -> Cell<'_> {
        match col {
            Column::MsgId => Cell::Str(&self.msg_id),
            Column::Header => lazy_cell(&self.header),
            Column::Metadata => lazy_cell(&self.metadata),
            Column::Content => lazy_cell(&self.content),
            Column::Buffers => Cell::Bufs(&self.buffers),
            Column::Submitted => date_cell(&self.submitted),
            Column::ClientUuid => str_cell(&self.client_uuid),
            Column::EngineUuid => str_cell(&self.engine_uuid),
            Column::Started => date_cell(&self.started),
            Column::Completed => date_cell(&self.completed),
            Column::Resubmitted => str_cell(&self.resubmitted),
            Column::Received => date_cell(&self.received),
            Column::ResultHeader => lazy_cell(&self.result_header),
            Column::ResultMetadata => lazy_cell(&self.result_metadata),
            Column::ResultContent => lazy_cell(&self.result_content),
            Column::ResultBuffers => Cell::Bufs(&self.result_buffers),
            Column::Queue => str_cell(&self.queue),
            Column::ExecuteInput => str_cell(&self.execute_input),
            Column::ExecuteResult => dict_cell(&self.execute_result),
            Column::Error => dict_cell(&self.error),
            Column::Stdout => str_cell(&self.stdout),
            Column::Stderr => str_cell(&self.stderr),
            Column::Label => str_cell(&self.label),
        }
    }

    /// JSON value of one column: `None` for null and for the buffer columns
    /// (which the Hub sends as frames); dates as ISO strings.
    pub fn get(&self, col: Column) -> Option<Value> {
        match self.cell(col) {
            Cell::Null | Cell::Bufs(_) => None,
            Cell::Str(s) => Some(Value::String(s.to_owned())),
            Cell::Date(d) => Some(Value::String(to_iso(&d))),
            Cell::Dict(m) => Some(Value::Object(m.clone())),
        }
    }

    /// JSON object of the requested columns (`None`: every column). Like the
    /// stock stores, `msg_id` always comes first and null columns are
    /// present as `null`; buffer columns never appear.
    pub fn to_json(&self, keys: Option<&[Column]>) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("msg_id".into(), Value::String(self.msg_id.clone()));
        let cols: &[Column] = keys.unwrap_or(&Column::ALL);
        for &col in cols {
            if col == Column::MsgId || col.is_buffers() {
                continue;
            }
            out.insert(col.name().into(), self.get(col).unwrap_or(Value::Null));
        }
        out
    }

    /// Total length of `buffers` + `result_buffers` (DictDB's `_record_bytes`),
    /// the quantity `size_limit` bounds.
    pub fn buffer_bytes(&self) -> usize {
        self.buffers
            .iter()
            .chain(&self.result_buffers)
            .map(Bytes::len)
            .sum()
    }

    /// Python truthiness of a column, as the Hub's merge logic tests it.
    pub fn is_truthy(&self, col: Column) -> bool {
        match self.cell(col) {
            Cell::Null => false,
            Cell::Str(s) => !s.is_empty(),
            Cell::Date(_) => true,
            Cell::Dict(m) => !m.is_empty(),
            Cell::Bufs(b) => !b.is_empty(),
        }
    }

    /// Take from `existing` every column that is truthy there and falsy here,
    /// returning the columns truthy in both but different (the Hub logs
    /// these as "conflicting initial state"). Mirrors the merge the stock
    /// Hub does when a request arrives after its IOPub; buffers are filled
    /// but never reported as conflicts.
    pub fn merge_from_existing(&mut self, existing: &TaskRecord) -> Vec<Column> {
        let mut conflicts = Vec::new();
        for col in Column::ALL {
            if !existing.is_truthy(col) {
                continue;
            }
            if self.is_truthy(col) {
                if !col.is_buffers() && self.get(col) != existing.get(col) {
                    conflicts.push(col);
                }
                continue;
            }
            self.copy_column_from(existing, col);
        }
        conflicts
    }

    fn copy_column_from(&mut self, other: &TaskRecord, col: Column) {
        match col {
            Column::MsgId => self.msg_id.clone_from(&other.msg_id),
            Column::Header => self.header.clone_from(&other.header),
            Column::Metadata => self.metadata.clone_from(&other.metadata),
            Column::Content => self.content.clone_from(&other.content),
            Column::Buffers => self.buffers.clone_from(&other.buffers),
            Column::Submitted => self.submitted = other.submitted,
            Column::ClientUuid => self.client_uuid.clone_from(&other.client_uuid),
            Column::EngineUuid => self.engine_uuid.clone_from(&other.engine_uuid),
            Column::Started => self.started = other.started,
            Column::Completed => self.completed = other.completed,
            Column::Resubmitted => self.resubmitted.clone_from(&other.resubmitted),
            Column::Received => self.received = other.received,
            Column::ResultHeader => self.result_header.clone_from(&other.result_header),
            Column::ResultMetadata => self.result_metadata.clone_from(&other.result_metadata),
            Column::ResultContent => self.result_content.clone_from(&other.result_content),
            Column::ResultBuffers => self.result_buffers.clone_from(&other.result_buffers),
            Column::Queue => self.queue.clone_from(&other.queue),
            Column::ExecuteInput => self.execute_input.clone_from(&other.execute_input),
            Column::ExecuteResult => self.execute_result.clone_from(&other.execute_result),
            Column::Error => self.error.clone_from(&other.error),
            Column::Stdout => self.stdout.clone_from(&other.stdout),
            Column::Stderr => self.stderr.clone_from(&other.stderr),
            Column::Label => self.label.clone_from(&other.label),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn column_names_round_trip_in_stock_order() {
        let names: Vec<&str> = Column::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(
            names.join(" "),
            "msg_id header metadata content buffers submitted client_uuid engine_uuid \
             started completed resubmitted received result_header result_metadata \
             result_content result_buffers queue execute_input execute_result error \
             stdout stderr label"
        );
        for c in Column::ALL {
            assert_eq!(Column::parse(c.name()), Some(c));
        }
        assert_eq!(Column::parse("bogus"), None);
    }

    #[test]
    fn parse_keys_reports_bad_keys_like_stock() {
        assert_eq!(
            Column::parse_keys(&["msg_id", "stdout"]).unwrap(),
            vec![Column::MsgId, Column::Stdout]
        );
        let err = Column::parse_keys(&["stdout", "foo", "bar"]).unwrap_err();
        assert_eq!(err.message(), "Bad record key(s): ['foo', 'bar']");
    }

    #[test]
    fn empty_record_has_empty_streams() {
        let r = TaskRecord::empty("abc");
        assert_eq!(r.msg_id, "abc");
        assert_eq!(r.stdout.as_deref(), Some(""));
        assert_eq!(r.stderr.as_deref(), Some(""));
        assert!(r.header.is_none() && r.submitted.is_none() && r.buffers.is_empty());
    }

    #[test]
    fn to_json_includes_msg_id_and_skips_buffers() {
        let mut r = TaskRecord::empty("m1");
        r.buffers = vec![Bytes::from_static(b"x")];
        r.submitted = Some("2026-11-24T22:42:56.924289Z".parse().unwrap());
        r.header = Some(json!({"a": 1}).as_object().unwrap().clone().into());
        let all = r.to_json(None);
        assert_eq!(all.len(), 21);
        assert_eq!(all["msg_id"], json!("m1"));
        assert!(!all.contains_key("buffers") && !all.contains_key("result_buffers"));
        assert_eq!(all["submitted"], json!("2026-11-24T22:42:56.924289Z"));
        assert_eq!(all["completed"], Value::Null);
        assert_eq!(all["stdout"], json!(""));

        let some = r.to_json(Some(&[Column::Header, Column::Buffers, Column::MsgId]));
        assert_eq!(
            Value::Object(some),
            json!({"msg_id": "m1", "header": {"a": 1}})
        );
        assert_eq!(r.get(Column::Buffers), None);
        assert_eq!(r.get(Column::Label), None);
    }

    #[test]
    fn raw_dicts_parse_on_read_and_reject_non_objects() {
        let d = Dict::from_raw(Bytes::from_static(br#" {"a": [1, 2]} "#)).unwrap();
        assert_eq!(d["a"], json!([1, 2]));
        assert_eq!(d.clone(), d);
        assert_eq!(
            d.clone().into_map(),
            *json!({"a": [1, 2]}).as_object().unwrap()
        );
        assert!(Dict::from_raw(Bytes::from_static(b"[1]")).is_none());
        assert!(Dict::from_raw(Bytes::from_static(b"")).is_none());
        // object-shaped but not JSON: reads as empty, like a failed decode
        assert!(Dict::from_raw(Bytes::from_static(b"{nope}"))
            .unwrap()
            .is_empty());
        let mut r = TaskRecord::empty("m");
        r.result_content = Dict::from_raw(Bytes::from_static(br#"{"status": "ok"}"#));
        assert_eq!(r.get(Column::ResultContent), Some(json!({"status": "ok"})));
        assert!(r.is_truthy(Column::ResultContent));
    }

    #[test]
    fn buffer_bytes_counts_both_lists() {
        let r = TaskRecord {
            buffers: vec![Bytes::from(vec![0u8; 10]), Bytes::from(vec![1u8; 5])],
            result_buffers: vec![Bytes::from(vec![2u8; 7])],
            ..TaskRecord::default()
        };
        assert_eq!(r.buffer_bytes(), 22);
    }

    #[test]
    fn merge_takes_missing_and_reports_conflicts() {
        let mut existing = TaskRecord::empty("m");
        existing.stdout = Some("early output".into());
        existing.execute_input = Some("a=1".into());
        existing.engine_uuid = Some("e-old".into());
        let mut incoming = TaskRecord::empty("m");
        incoming.engine_uuid = Some("e-new".into());
        incoming.queue = Some("mux".into());
        let conflicts = incoming.merge_from_existing(&existing);
        assert_eq!(conflicts, vec![Column::EngineUuid]);
        assert_eq!(incoming.stdout.as_deref(), Some("early output"));
        assert_eq!(incoming.execute_input.as_deref(), Some("a=1"));
        assert_eq!(incoming.engine_uuid.as_deref(), Some("e-new"));
        assert_eq!(incoming.queue.as_deref(), Some("mux"));
    }
}
