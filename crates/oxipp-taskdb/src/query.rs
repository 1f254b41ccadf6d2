//! Mongo-style queries (`db_request.query`) parsed once and matched in Rust.
//!
//! The semantics follow stock DictDB with three deliberate differences:
//!
//! * `$gt` means "greater than". Stock DictDB defines it as
//!   `lambda a, b: b > a`, i.e. the same as `$lt`; SQLiteDB and MongoDB get
//!   it right, and so do we.
//! * Comparing incompatible values (a string column with a number, anything
//!   ordered against null or a dict, `$glob` on a date) is simply false
//!   instead of a Python `TypeError` that fails the whole request.
//! * ISO strings are only turned into dates for the date columns
//!   (`submitted`, `started`, `completed`, `received`); stock converts every
//!   ISO-looking string in the query, which can only make string columns
//!   unequal to what the client asked for.
//!
//! `$all` follows MongoDB on scalar fields (every listed value equals the
//! field, non-empty list); stock's `a in bb` loop degenerates to substring
//! tests on strings, which nobody can have relied on.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::dates::{parse_iso, Iso};
use crate::glob::Pattern;
use crate::record::{Cell, Column, Kind, TaskRecord};
use crate::store::{py_repr, DbError};

/// A query argument, typed for the column it is compared with.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Operand {
    Null,
    Str(String),
    Date(DateTime<Utc>),
    /// Dicts (comparable with dict columns by deep equality) and anything
    /// else (numbers, bools, lists: equal to no column value).
    Json(Value),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cond {
    Eq(Operand),
    Ne(Operand),
    Lt(Operand),
    Gt(Operand),
    Lte(Operand),
    Gte(Operand),
    In(Vec<Operand>),
    Nin(Vec<Operand>),
    All(Vec<Operand>),
    /// A well-formed `$mod`; no column holds numbers, so it never matches.
    Mod,
    Exists(bool),
    Glob(Pattern),
}

/// A parsed query: all terms must hold.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Query {
    pub(crate) terms: Vec<(Column, Cond)>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn operand(kind: Kind, v: &Value) -> Result<Operand, DbError> {
    Ok(match v {
        Value::Null => Operand::Null,
        Value::String(s) if kind == Kind::Date => match parse_iso(s) {
            Iso::Date(d) => Operand::Date(d),
            Iso::Plain => Operand::Str(s.clone()),
            Iso::Invalid => {
                return Err(DbError::Value(format!(
                    "Invalid ISO8601 timestamp: {}",
                    py_repr(s)
                )))
            }
        },
        Value::String(s) => Operand::Str(s.clone()),
        other => Operand::Json(other.clone()),
    })
}

fn operand_list(kind: Kind, op: &str, v: &Value) -> Result<Vec<Operand>, DbError> {
    match v {
        Value::Array(items) => items.iter().map(|x| operand(kind, x)).collect(),
        other => Err(DbError::Type(format!(
            "{op} requires a list, not {}",
            type_name(other)
        ))),
    }
}

/// Python truthiness, which is all stock `$exists` looks at.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn parse_cond(col: Column, op: &str, arg: &Value) -> Result<Cond, DbError> {
    let kind = col.kind();
    Ok(match op {
        "$eq" => Cond::Eq(operand(kind, arg)?),
        "$ne" => Cond::Ne(operand(kind, arg)?),
        "$lt" => Cond::Lt(operand(kind, arg)?),
        "$gt" => Cond::Gt(operand(kind, arg)?),
        "$lte" => Cond::Lte(operand(kind, arg)?),
        "$gte" => Cond::Gte(operand(kind, arg)?),
        "$in" => Cond::In(operand_list(kind, op, arg)?),
        "$nin" => Cond::Nin(operand_list(kind, op, arg)?),
        "$all" => Cond::All(operand_list(kind, op, arg)?),
        "$mod" => match arg.as_array().map(Vec::as_slice) {
            Some([d, r]) if d.is_number() && r.is_number() && d.as_f64() != Some(0.0) => Cond::Mod,
            _ => {
                return Err(DbError::Value(
                    "$mod requires [divisor, remainder] with a non-zero divisor".into(),
                ))
            }
        },
        "$exists" => Cond::Exists(truthy(arg)),
        "$glob" => match arg {
            Value::String(p) => Cond::Glob(Pattern::new(p)),
            other => {
                return Err(DbError::Type(format!(
                    "$glob requires a str pattern, not {}",
                    type_name(other)
                )))
            }
        },
        other => {
            return Err(DbError::Key(format!(
                "Unsupported operator: {}",
                py_repr(other)
            )))
        }
    })
}

impl Query {
    /// Parse a `db_request.query` object.
    ///
    /// `{col: value}` is equality (`null` matches null); `{col: {"$op": arg,
    /// ...}}` ANDs the operators. A dict with no `$` keys (including `{}`) is
    /// equality with that dict, as in MongoDB. Unknown columns use stock
    /// SQLiteDB's `KeyError("Illegal testing key(s): {...}")`; unknown
    /// operators its `KeyError("Unsupported operator: '$x'")`.
    pub fn parse(v: &Value) -> Result<Query, DbError> {
        let Value::Object(obj) = v else {
            return Err(DbError::Type(format!(
                "query must be a dict, not {}",
                type_name(v)
            )));
        };
        let bad: Vec<String> = obj
            .keys()
            .filter(|k| Column::parse(k).is_none())
            .map(|k| py_repr(k))
            .collect();
        if !bad.is_empty() {
            return Err(DbError::Key(format!(
                "Illegal testing key(s): {{{}}}",
                bad.join(", ")
            )));
        }
        let mut terms = Vec::new();
        for (name, sub) in obj {
            let col = Column::parse(name).unwrap_or(Column::MsgId);
            if col.is_buffers() {
                return Err(DbError::Value(format!(
                    "Cannot test buffer column {} in a query",
                    py_repr(name)
                )));
            }
            match sub {
                Value::Object(ops) if ops.keys().any(|k| k.starts_with('$')) => {
                    for (op, arg) in ops {
                        terms.push((col, parse_cond(col, op, arg)?));
                    }
                }
                other => terms.push((col, Cond::Eq(operand(col.kind(), other)?))),
            }
        }
        Ok(Query { terms })
    }

    /// Matches every record.
    pub fn all() -> Query {
        Query::default()
    }

    /// `{"msg_id": {"$in": ids}}` without building JSON (the Hub's
    /// `result_request`, `resubmit_request` and `purge_request` lookups).
    pub fn msg_id_in<I, S>(ids: I) -> Query
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let ops = ids.into_iter().map(|s| Operand::Str(s.into())).collect();
        Query {
            terms: vec![(Column::MsgId, Cond::In(ops))],
        }
    }

    /// Add `col == value` / `col op value` terms from another query (AND).
    pub fn and(mut self, other: Query) -> Query {
        self.terms.extend(other.terms);
        self
    }

    pub fn is_all(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn matches(&self, rec: &TaskRecord) -> bool {
        self.terms
            .iter()
            .all(|(col, cond)| cond_matches(rec.cell(*col), cond))
    }

    /// When the query pins `msg_id` to a finite set, the only ids that can
    /// match (lets stores use their primary index instead of scanning).
    pub(crate) fn msg_id_candidates(&self) -> Option<Vec<&str>> {
        self.terms.iter().find_map(|(col, cond)| {
            if *col != Column::MsgId {
                return None;
            }
            match cond {
                Cond::Eq(Operand::Str(s)) => Some(vec![s.as_str()]),
                Cond::Eq(_) => Some(Vec::new()),
                Cond::In(ops) => Some(
                    ops.iter()
                        .filter_map(|o| match o {
                            Operand::Str(s) => Some(s.as_str()),
                            _ => None,
                        })
                        .collect(),
                ),
                _ => None,
            }
        })
    }
}

pub(crate) fn cell_eq(cell: Cell<'_>, op: &Operand) -> bool {
    match (cell, op) {
        (Cell::Null, Operand::Null) => true,
        (Cell::Str(a), Operand::Str(b)) => a == b,
        (Cell::Date(a), Operand::Date(b)) => a == *b,
        (Cell::Dict(a), Operand::Json(Value::Object(b))) => obj_eq(a, b),
        _ => false,
    }
}

fn cell_cmp(cell: Cell<'_>, op: &Operand) -> Option<Ordering> {
    match (cell, op) {
        (Cell::Str(a), Operand::Str(b)) => Some(a.cmp(b.as_str())),
        (Cell::Date(a), Operand::Date(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

fn cond_matches(cell: Cell<'_>, cond: &Cond) -> bool {
    match cond {
        Cond::Eq(op) => cell_eq(cell, op),
        Cond::Ne(op) => !cell_eq(cell, op),
        Cond::Lt(op) => cell_cmp(cell, op) == Some(Ordering::Less),
        Cond::Gt(op) => cell_cmp(cell, op) == Some(Ordering::Greater),
        Cond::Lte(op) => matches!(cell_cmp(cell, op), Some(Ordering::Less | Ordering::Equal)),
        Cond::Gte(op) => matches!(
            cell_cmp(cell, op),
            Some(Ordering::Greater | Ordering::Equal)
        ),
        Cond::In(ops) => ops.iter().any(|op| cell_eq(cell, op)),
        Cond::Nin(ops) => !ops.iter().any(|op| cell_eq(cell, op)),
        Cond::All(ops) => !ops.is_empty() && ops.iter().all(|op| cell_eq(cell, op)),
        Cond::Mod => false,
        Cond::Exists(want) => !matches!(cell, Cell::Null) == *want,
        Cond::Glob(p) => match cell {
            Cell::Str(s) => p.matches(s),
            _ => false,
        },
    }
}

/// Python `==` on decoded JSON: order-insensitive dicts, `1 == 1.0 == True`,
/// and ISO timestamps compared as instants (stock parses dates on both the
/// stored header and the query before comparing).
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::String(x), Value::String(y)) => {
            x == y
                || match (parse_iso(x), parse_iso(y)) {
                    (Iso::Date(dx), Iso::Date(dy)) => dx == dy,
                    _ => false,
                }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => obj_eq(x, y),
        (Value::Bool(_) | Value::Number(_), Value::Bool(_) | Value::Number(_)) => num_eq(a, b),
        _ => false,
    }
}

fn obj_eq(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| json_eq(v, w)))
}

enum Num {
    Int(i128),
    Float(f64),
}

fn as_num(v: &Value) -> Option<Num> {
    match v {
        Value::Bool(b) => Some(Num::Int(i128::from(*b))),
        Value::Number(n) => n
            .as_i64()
            .map(|i| Num::Int(i128::from(i)))
            .or_else(|| n.as_u64().map(|u| Num::Int(i128::from(u))))
            .or_else(|| n.as_f64().map(Num::Float)),
        _ => None,
    }
}

fn num_eq(a: &Value, b: &Value) -> bool {
    let int_float = |i: i128, f: f64| f.is_finite() && f.fract() == 0.0 && f as i128 == i;
    match (as_num(a), as_num(b)) {
        (Some(Num::Int(x)), Some(Num::Int(y))) => x == y,
        (Some(Num::Float(x)), Some(Num::Float(y))) => x == y,
        (Some(Num::Int(i)), Some(Num::Float(f))) | (Some(Num::Float(f)), Some(Num::Int(i))) => {
            int_float(i, f)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(v: Value) -> Query {
        Query::parse(&v).unwrap()
    }

    fn dt(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn rec(id: &str, submitted: &str) -> TaskRecord {
        TaskRecord {
            msg_id: id.into(),
            submitted: Some(dt(submitted)),
            engine_uuid: Some(format!("engine-{id}")),
            header: Some(
                json!({"msg_id": id, "date": submitted, "n": 1})
                    .as_object()
                    .unwrap()
                    .clone()
                    .into(),
            ),
            stdout: Some(String::new()),
            ..TaskRecord::default()
        }
    }

    #[test]
    fn equality_and_null() {
        let r = rec("a", "2026-01-01T00:00:00Z");
        assert!(q(json!({"msg_id": "a"})).matches(&r));
        assert!(!q(json!({"msg_id": "b"})).matches(&r));
        assert!(q(json!({"completed": null})).matches(&r));
        assert!(!q(json!({"submitted": null})).matches(&r));
        assert!(q(json!({"completed": {"$eq": null}})).matches(&r));
        assert!(q(json!({"submitted": {"$ne": null}})).matches(&r));
        assert!(!q(json!({"completed": {"$ne": null}})).matches(&r));
        assert!(q(json!({"label": null, "msg_id": "a"})).matches(&r));
        assert!(
            !q(json!({"msg_id": 5})).matches(&r),
            "str vs int is unequal"
        );
        assert!(q(json!({"msg_id": {"$ne": 5}})).matches(&r));
        assert!(q(json!({})).matches(&r));
        assert!(Query::all().matches(&r));
    }

    #[test]
    fn gt_is_really_greater_than() {
        let r = rec("m", "2026-01-01T00:00:10Z");
        assert!(q(json!({"submitted": {"$gt": "2026-01-01T00:00:05Z"}})).matches(&r));
        assert!(!q(json!({"submitted": {"$gt": "2026-01-01T00:00:15Z"}})).matches(&r));
        assert!(!q(json!({"submitted": {"$gt": "2026-01-01T00:00:10Z"}})).matches(&r));
        assert!(q(json!({"submitted": {"$gte": "2026-01-01T00:00:10Z"}})).matches(&r));
        assert!(q(json!({"submitted": {"$lt": "2026-01-01T00:00:15Z"}})).matches(&r));
        assert!(!q(json!({"submitted": {"$lt": "2026-01-01T00:00:10Z"}})).matches(&r));
        assert!(q(json!({"submitted": {"$lte": "2026-01-01T00:00:10Z"}})).matches(&r));
        assert!(q(json!({"msg_id": {"$gt": "a", "$lt": "n"}})).matches(&r));
        assert!(!q(json!({"msg_id": {"$gt": "n"}})).matches(&r));
    }

    #[test]
    fn dates_with_offsets_fractions_and_naive_local() {
        let r = rec("m", "2026-01-01T12:00:00.5Z");
        assert!(q(json!({"submitted": "2026-01-01T12:00:00.500000Z"})).matches(&r));
        assert!(q(json!({"submitted": "2026-01-01T13:00:00.5+01:00"})).matches(&r));
        assert!(q(json!({"submitted": "2026-01-01T07:00:00.5-0500"})).matches(&r));
        assert!(!q(json!({"submitted": "2026-01-01T12:00:00Z"})).matches(&r));
        // naive = local time
        let naive = dt("2026-01-01T12:00:00.5Z")
            .with_timezone(&chrono::Local)
            .naive_local()
            .format("%Y-%m-%dT%H:%M:%S%.6f")
            .to_string();
        assert!(q(json!({"submitted": naive})).matches(&r));
        // a non-ISO string on a date column is an (unequal) string
        assert!(!q(json!({"submitted": "yesterday"})).matches(&r));
        assert!(!q(json!({"submitted": {"$lt": "yesterday"}})).matches(&r));
        assert!(q(json!({"submitted": {"$ne": "yesterday"}})).matches(&r));
        // ISO strings are not dates on string columns
        let mut s = r.clone();
        s.label = Some("2026-01-01T12:00:00.5Z".into());
        assert!(q(json!({"label": "2026-01-01T12:00:00.5Z"})).matches(&s));
        assert!(!q(json!({"label": "2026-01-01T12:00:00.500Z"})).matches(&s));
        // dates inside a $in list are parsed too
        assert!(q(json!({"submitted": {"$in": ["x", "2026-01-01T12:00:00.5Z"]}})).matches(&r));
        let err = Query::parse(&json!({"submitted": "2026-13-01T00:00:00Z"})).unwrap_err();
        assert_eq!(err.ename(), "ValueError");
    }

    #[test]
    fn incompatible_comparisons_are_false() {
        let r = rec("m", "2026-01-01T12:00:00Z");
        for v in [
            json!({"msg_id": {"$lt": 5}}),
            json!({"msg_id": {"$gt": null}}),
            json!({"completed": {"$lt": "2030-01-01T00:00:00Z"}}),
            json!({"header": {"$gt": {}}}),
            json!({"submitted": {"$glob": "2026*"}}),
            json!({"header": {"$glob": "*"}}),
            json!({"completed": {"$glob": "*"}}),
            json!({"msg_id": {"$mod": [2, 0]}}),
            json!({"msg_id": {"$in": []}}),
        ] {
            assert!(!q(v.clone()).matches(&r), "{v}");
        }
    }

    #[test]
    fn in_nin_all() {
        let r = rec("b", "2026-01-01T12:00:00Z");
        assert!(q(json!({"msg_id": {"$in": ["a", "b"]}})).matches(&r));
        assert!(!q(json!({"msg_id": {"$in": ["a", "c"]}})).matches(&r));
        assert!(q(json!({"msg_id": {"$nin": ["a", "c"]}})).matches(&r));
        assert!(!q(json!({"msg_id": {"$nin": ["b"]}})).matches(&r));
        assert!(q(json!({"completed": {"$in": [null]}})).matches(&r));
        assert!(!q(json!({"completed": {"$nin": ["x", null]}})).matches(&r));
        assert!(q(json!({"completed": {"$nin": ["x"]}})).matches(&r));
        assert!(q(json!({"msg_id": {"$all": ["b", "b"]}})).matches(&r));
        assert!(!q(json!({"msg_id": {"$all": ["b", "c"]}})).matches(&r));
        assert!(!q(json!({"msg_id": {"$all": []}})).matches(&r));
        let err = Query::parse(&json!({"msg_id": {"$in": "abc"}})).unwrap_err();
        assert_eq!(err.ename(), "TypeError");
    }

    #[test]
    fn exists_mod_glob() {
        let r = rec("task-42", "2026-01-01T12:00:00Z");
        assert!(q(json!({"submitted": {"$exists": true}})).matches(&r));
        assert!(!q(json!({"submitted": {"$exists": false}})).matches(&r));
        assert!(q(json!({"completed": {"$exists": false}})).matches(&r));
        assert!(q(json!({"completed": {"$exists": 0}})).matches(&r));
        assert!(q(json!({"msg_id": {"$glob": "task-*"}})).matches(&r));
        assert!(q(json!({"msg_id": {"$glob": "task-4?"}})).matches(&r));
        assert!(q(json!({"msg_id": {"$glob": "*-[0-9][0-9]"}})).matches(&r));
        assert!(!q(json!({"msg_id": {"$glob": "TASK-*"}})).matches(&r));
        assert!(
            !q(json!({"label": {"$glob": "*"}})).matches(&r),
            "null never globs"
        );
        assert!(
            q(json!({"stdout": {"$glob": "*"}})).matches(&r),
            "empty string globs *"
        );
        for bad in [json!([2]), json!([0, 1]), json!("x"), json!([1, "a"])] {
            let err = Query::parse(&json!({"msg_id": {"$mod": bad}})).unwrap_err();
            assert_eq!(err.ename(), "ValueError");
        }
        let err = Query::parse(&json!({"msg_id": {"$glob": 3}})).unwrap_err();
        assert_eq!(err.ename(), "TypeError");
    }

    #[test]
    fn dict_columns_compare_by_value() {
        let r = rec("m", "2026-01-01T12:00:00Z");
        let same = json!({"n": 1.0, "date": "2026-01-01T13:00:00+01:00", "msg_id": "m"});
        assert!(q(json!({"header": {"$eq": same.clone()}})).matches(&r));
        assert!(
            q(json!({"header": same.clone()})).matches(&r),
            "no $ keys: equality"
        );
        assert!(q(json!({"header": {"$in": [{}, same.clone()]}})).matches(&r));
        assert!(!q(json!({"header": {"$ne": same}})).matches(&r));
        assert!(!q(json!({"header": {"n": 2, "date": "x", "msg_id": "m"}})).matches(&r));
        assert!(!q(json!({"header": {}})).matches(&r));
        assert!(q(json!({"metadata": {"$ne": {}}})).matches(&r));
        assert!(q(json!({"metadata": null})).matches(&r));
        assert!(json_eq(&json!(true), &json!(1)));
        assert!(!json_eq(&json!("1"), &json!(1)));
        assert!(json_eq(
            &json!([1, {"a": null}]),
            &json!([1.0, {"a": null}])
        ));
    }

    #[test]
    fn parse_errors_are_clear() {
        let e = Query::parse(&json!({"bogus": 1, "msg_id": "x"})).unwrap_err();
        assert_eq!(e.message(), "Illegal testing key(s): {'bogus'}");
        assert_eq!(e.ename(), "KeyError");
        let e = Query::parse(&json!({"msg_id": {"$regex": "x"}})).unwrap_err();
        assert_eq!(e.message(), "Unsupported operator: '$regex'");
        let e = Query::parse(&json!({"msg_id": {"$in": ["a"], "plain": 1}})).unwrap_err();
        assert_eq!(e.message(), "Unsupported operator: 'plain'");
        let e = Query::parse(&json!({"buffers": null})).unwrap_err();
        assert_eq!(e.ename(), "ValueError");
        let e = Query::parse(&json!(["msg_id"])).unwrap_err();
        assert_eq!(e.ename(), "TypeError");
    }

    #[test]
    fn msg_id_helpers() {
        let q1 = Query::msg_id_in(["a", "b"]);
        assert!(q1.matches(&rec("a", "2026-01-01T00:00:00Z")));
        assert!(!q1.matches(&rec("c", "2026-01-01T00:00:00Z")));
        assert_eq!(q1.msg_id_candidates(), Some(vec!["a", "b"]));
        assert_eq!(
            q(json!({"msg_id": "x"})).msg_id_candidates(),
            Some(vec!["x"])
        );
        assert_eq!(q(json!({"label": "x"})).msg_id_candidates(), None);
        let both = q(json!({"label": null})).and(Query::msg_id_in(["a"]));
        assert_eq!(both.terms.len(), 2);
    }
}
