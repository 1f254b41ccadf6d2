//! Translating a [`Query`] into an SQLite `WHERE` clause.
//!
//! Every term becomes either an *exact* SQL condition (same answer as
//! [`Query::matches`] on every row) or a *superset* condition; if any term
//! is only a superset, the store re-checks the fetched rows in Rust. The
//! translation must agree with the in-memory semantics, so it differs from
//! stock SQLiteDB where stock differs from DictDB:
//!
//! * `$ne`/`$nin` use `IS NOT` and keep null rows (Python `None != x`);
//!   stock's `!=` drops them.
//! * values of the wrong type for a column compare as constant false
//!   instead of using SQLite's cross-type ordering (e.g. text > integer).
//! * dates are stored as fixed-width UTC text, so text order is time order.
//!
//! Like stock, `$in`/`$nin` lists containing `null` are rejected.

use rusqlite::types::Value as SqlValue;
use serde_json::Value;

use crate::dates::{sortable_year, to_sortable};
use crate::query::{Cond, Operand, Query};
use crate::record::{Column, Kind};
use crate::store::{py_repr, DbError};

/// Larger `$in` lists are filtered in Rust rather than risk SQLite's
/// bound-parameter limit (32766).
const MAX_IN_PARAMS: usize = 10_000;

pub(crate) struct Rendered {
    pub where_sql: String,
    pub params: Vec<SqlValue>,
    /// False when the rows must be re-checked with `Query::matches`.
    pub exact: bool,
}

/// How one operand compares for equality against a column.
enum EqSql {
    Never,
    IsNull,
    Param(SqlValue),
    /// Needs Rust (dict equality, out-of-range dates).
    Rust,
}

fn date_param(d: &chrono::DateTime<chrono::Utc>) -> EqSql {
    if sortable_year(d) {
        EqSql::Param(SqlValue::Text(to_sortable(d)))
    } else {
        EqSql::Rust
    }
}

fn eq_sql(kind: Kind, op: &Operand) -> EqSql {
    match (kind, op) {
        (_, Operand::Null) => EqSql::IsNull,
        (Kind::Str, Operand::Str(s)) => EqSql::Param(SqlValue::Text(s.clone())),
        (Kind::Date, Operand::Date(d)) => date_param(d),
        (Kind::Dict, Operand::Json(Value::Object(_))) => EqSql::Rust,
        _ => EqSql::Never,
    }
}

fn cmp_sql(kind: Kind, op: &Operand) -> EqSql {
    match (kind, op) {
        (Kind::Str, Operand::Str(s)) => EqSql::Param(SqlValue::Text(s.clone())),
        (Kind::Date, Operand::Date(d)) => date_param(d),
        _ => EqSql::Never,
    }
}

enum Piece {
    Exact(String),
    Superset(String),
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn reject_null(op: &str, ops: &[Operand]) -> Result<(), DbError> {
    if ops.contains(&Operand::Null) {
        return Err(DbError::Value(format!(
            "Cannot use {} test with NULL values on SQLite backend",
            py_repr(op)
        )));
    }
    Ok(())
}

fn term(col: Column, cond: &Cond, params: &mut Vec<SqlValue>) -> Result<Piece, DbError> {
    let kind = col.kind();
    let c = format!("\"{}\"", col.name());
    let exact = |s: String| Ok(Piece::Exact(s));
    match cond {
        Cond::Eq(op) => match eq_sql(kind, op) {
            EqSql::Never => exact("0".into()),
            EqSql::IsNull => exact(format!("{c} IS NULL")),
            EqSql::Param(v) => {
                params.push(v);
                exact(format!("{c} = ?"))
            }
            EqSql::Rust => Ok(Piece::Superset(format!("{c} IS NOT NULL"))),
        },
        Cond::Ne(op) => match eq_sql(kind, op) {
            EqSql::Never => exact("1".into()),
            EqSql::IsNull => exact(format!("{c} IS NOT NULL")),
            EqSql::Param(v) => {
                params.push(v);
                exact(format!("{c} IS NOT ?"))
            }
            EqSql::Rust => Ok(Piece::Superset("1".into())),
        },
        Cond::Lt(op) | Cond::Gt(op) | Cond::Lte(op) | Cond::Gte(op) => {
            let sym = match cond {
                Cond::Lt(_) => "<",
                Cond::Gt(_) => ">",
                Cond::Lte(_) => "<=",
                _ => ">=",
            };
            match cmp_sql(kind, op) {
                EqSql::Param(v) => {
                    params.push(v);
                    exact(format!("{c} {sym} ?"))
                }
                EqSql::Rust => Ok(Piece::Superset("1".into())),
                EqSql::Never | EqSql::IsNull => exact("0".into()),
            }
        }
        Cond::In(ops) | Cond::Nin(ops) => {
            let is_in = matches!(cond, Cond::In(_));
            reject_null(if is_in { "$in" } else { "$nin" }, ops)?;
            let mut vals = Vec::new();
            for op in ops {
                match eq_sql(kind, op) {
                    EqSql::Param(v) => vals.push(v),
                    EqSql::Never | EqSql::IsNull => {}
                    EqSql::Rust => return Ok(Piece::Superset("1".into())),
                }
            }
            if vals.len() > MAX_IN_PARAMS {
                return Ok(Piece::Superset("1".into()));
            }
            let n = vals.len();
            params.extend(vals);
            match (is_in, n) {
                (true, 0) => exact("0".into()),
                (false, 0) => exact("1".into()),
                (true, n) => exact(format!("{c} IN ({})", placeholders(n))),
                (false, n) => exact(format!("({c} IS NULL OR {c} NOT IN ({}))", placeholders(n))),
            }
        }
        Cond::All(ops) => {
            let mut want: Option<EqSql> = None;
            for op in ops {
                let e = eq_sql(kind, op);
                want = Some(match (want, e) {
                    (_, EqSql::Rust) | (Some(EqSql::Rust), _) => {
                        return Ok(Piece::Superset("1".into()))
                    }
                    (_, EqSql::Never) | (Some(EqSql::Never), _) => EqSql::Never,
                    (None, e) => e,
                    (Some(EqSql::IsNull), EqSql::IsNull) => EqSql::IsNull,
                    (Some(EqSql::Param(a)), EqSql::Param(b)) if a == b => EqSql::Param(a),
                    _ => EqSql::Never,
                });
            }
            match want {
                None | Some(EqSql::Never) => exact("0".into()),
                Some(EqSql::IsNull) => exact(format!("{c} IS NULL")),
                Some(EqSql::Param(v)) => {
                    params.push(v);
                    exact(format!("{c} = ?"))
                }
                Some(EqSql::Rust) => Ok(Piece::Superset("1".into())),
            }
        }
        Cond::Mod => exact("0".into()),
        Cond::Exists(true) => exact(format!("{c} IS NOT NULL")),
        Cond::Exists(false) => exact(format!("{c} IS NULL")),
        Cond::Glob(p) if kind == Kind::Str => match p.to_sqlite_glob() {
            Some(Some(g)) => {
                params.push(SqlValue::Text(g));
                exact(format!("{c} GLOB ?"))
            }
            Some(None) => exact("0".into()),
            None => Ok(Piece::Superset(format!("{c} IS NOT NULL"))),
        },
        Cond::Glob(_) => exact("0".into()),
    }
}

pub(crate) fn render(q: &Query) -> Result<Rendered, DbError> {
    let mut params = Vec::new();
    let mut parts = Vec::with_capacity(q.terms.len());
    let mut all_exact = true;
    for (col, cond) in &q.terms {
        match term(*col, cond, &mut params)? {
            Piece::Exact(s) => parts.push(s),
            Piece::Superset(s) => {
                all_exact = false;
                parts.push(s);
            }
        }
    }
    if params.len() > 3 * MAX_IN_PARAMS {
        return Ok(Rendered {
            where_sql: "1".into(),
            params: Vec::new(),
            exact: false,
        });
    }
    let where_sql = if parts.is_empty() {
        "1".to_owned()
    } else {
        parts.join(" AND ")
    };
    Ok(Rendered {
        where_sql,
        params,
        exact: all_exact,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(v: Value) -> Rendered {
        render(&Query::parse(&v).unwrap()).unwrap()
    }

    #[test]
    fn renders_stock_shapes() {
        let x = r(json!({"completed": {"$ne": null}}));
        assert_eq!(x.where_sql, "\"completed\" IS NOT NULL");
        assert!(x.exact && x.params.is_empty());

        let x = r(json!({"msg_id": {"$in": ["a", "b"]}, "engine_uuid": "e"}));
        // clauses follow the query object's key order (serde_json maps are sorted)
        assert_eq!(x.where_sql, "\"engine_uuid\" = ? AND \"msg_id\" IN (?, ?)");
        assert_eq!(x.params.len(), 3);

        let x = r(json!({"submitted": {"$gt": "2026-01-01T01:00:00+01:00"}}));
        assert_eq!(x.where_sql, "\"submitted\" > ?");
        assert_eq!(
            x.params,
            vec![SqlValue::Text("2026-01-01T00:00:00.000000Z".into())]
        );

        let x = r(json!({"label": {"$glob": "[!a]*"}}));
        assert_eq!(x.where_sql, "\"label\" GLOB ?");
        assert_eq!(x.params, vec![SqlValue::Text("[^a]*".into())]);

        let x = r(json!({"label": {"$nin": ["a"]}}));
        assert_eq!(x.where_sql, "(\"label\" IS NULL OR \"label\" NOT IN (?))");

        assert_eq!(r(json!({})).where_sql, "1");
    }

    #[test]
    fn dict_equality_needs_rust() {
        let x = r(json!({"header": {"$eq": {"a": 1}}}));
        assert!(!x.exact);
        assert_eq!(x.where_sql, "\"header\" IS NOT NULL");
        let x = r(json!({"header": null}));
        assert!(x.exact);
    }

    #[test]
    fn null_in_lists_is_rejected_like_stock() {
        let q = Query::parse(&json!({"completed": {"$in": [null]}})).unwrap();
        let e = render(&q).err().unwrap();
        assert_eq!(e.ename(), "ValueError");
        assert_eq!(
            e.to_string(),
            "Cannot use '$in' test with NULL values on SQLite backend"
        );
        let q = Query::parse(&json!({"label": {"$nin": ["x", null]}})).unwrap();
        assert!(render(&q).err().unwrap().to_string().contains("'$nin'"));
    }
}
