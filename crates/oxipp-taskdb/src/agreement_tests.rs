//! Property tests: the in-memory matcher and the SQLite translation must
//! give the same answers on the same records.

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use crate::glob::Pattern;
use crate::memory::MemoryStore;
use crate::query::Query;
use crate::record::TaskRecord;
use crate::sql::render;
use crate::sqlite::SqliteStore;
use crate::store::TaskStore;

const STRINGS: &[&str] = &[
    "", "a", "ab", "b", "t1", "t10", "*", "[", "]", "^", "-", "!", "é", "a*b", "A", "a-b",
];

fn date(i: usize) -> DateTime<Utc> {
    let secs = [0i64, 1, 2][i % 3];
    let micros = [0u32, 500_000][i / 3 % 2];
    Utc.timestamp_opt(1_800_000_000 + secs, micros * 1000)
        .unwrap()
}

/// The same instants in several ISO spellings, plus one outside the pool.
fn date_strings() -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..6 {
        let d = date(i);
        out.push(d.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
        out.push(
            d.with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
                .format("%Y-%m-%dT%H:%M:%S%.f+01:00")
                .to_string(),
        );
    }
    out.push("2030-01-01T00:00:00Z".into());
    out
}

fn dicts() -> Vec<Value> {
    vec![
        json!({}),
        json!({"a": 1}),
        json!({"a": 1.0}),
        json!({"b": [1, "x"]}),
        json!({"date": "2027-01-15T08:00:00Z"}),
        json!({"date": "2027-01-15T09:00:00+01:00"}),
    ]
}

fn opt_str() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop::sample::select(STRINGS).prop_map(str::to_owned))
}

fn opt_date() -> impl Strategy<Value = Option<DateTime<Utc>>> {
    prop::option::of((0usize..6).prop_map(date))
}

fn opt_dict() -> impl Strategy<Value = Option<Map<String, Value>>> {
    prop::option::of(
        prop::sample::select(dicts()).prop_map(|v| v.as_object().cloned().unwrap_or_default()),
    )
}

fn bufs() -> impl Strategy<Value = Vec<Bytes>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..6), 0..3)
        .prop_map(|v| v.into_iter().map(Bytes::from).collect())
}

fn record(i: usize) -> impl Strategy<Value = TaskRecord> {
    (
        (opt_str(), opt_str(), opt_str()),
        (opt_date(), opt_date()),
        (opt_dict(), opt_dict()),
        bufs(),
    )
        .prop_map(
            move |(
                (engine_uuid, label, stdout),
                (submitted, completed),
                (header, metadata),
                buffers,
            )| {
                TaskRecord {
                    msg_id: format!("t{i}"),
                    engine_uuid,
                    label,
                    stdout,
                    submitted,
                    completed,
                    header: header.map(Into::into),
                    metadata: metadata.map(Into::into),
                    buffers,
                    ..TaskRecord::default()
                }
            },
        )
}

fn records() -> impl Strategy<Value = Vec<TaskRecord>> {
    (0usize..12).prop_flat_map(|n| (0..n).map(record).collect::<Vec<_>>())
}

fn scalar() -> impl Strategy<Value = Value> {
    let mut pool: Vec<Value> = STRINGS.iter().map(|s| json!(s)).collect();
    pool.extend(date_strings().into_iter().map(Value::String));
    pool.extend(dicts());
    pool.extend([Value::Null, json!(1), json!(true), json!([1])]);
    prop::sample::select(pool)
}

fn non_null_scalar() -> impl Strategy<Value = Value> {
    scalar().prop_filter("no null", |v| !v.is_null())
}

fn glob_pattern() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!['a', 'b', '*', '?', '[', ']', '!', '^', '-', 'é']),
        0..6,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

fn condition() -> impl Strategy<Value = Value> {
    let op = prop_oneof![
        scalar().prop_map(|v| ("$eq", v)),
        scalar().prop_map(|v| ("$ne", v)),
        scalar().prop_map(|v| ("$lt", v)),
        scalar().prop_map(|v| ("$gt", v)),
        scalar().prop_map(|v| ("$lte", v)),
        scalar().prop_map(|v| ("$gte", v)),
        // nulls inside lists are covered by the (expected) SQLite rejection
        prop::collection::vec(scalar(), 0..4).prop_map(|v| ("$in", Value::Array(v))),
        prop::collection::vec(non_null_scalar(), 0..4).prop_map(|v| ("$in", Value::Array(v))),
        prop::collection::vec(non_null_scalar(), 0..4).prop_map(|v| ("$nin", Value::Array(v))),
        prop::collection::vec(scalar(), 0..3).prop_map(|v| ("$all", Value::Array(v))),
        any::<bool>().prop_map(|b| ("$exists", json!(b))),
        glob_pattern().prop_map(|p| ("$glob", json!(p))),
        Just(("$mod", json!([2, 0]))),
    ];
    prop_oneof![
        scalar(),
        prop::collection::vec(op, 1..3).prop_map(|ops| {
            Value::Object(ops.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
        }),
    ]
}

fn query() -> impl Strategy<Value = Value> {
    let cols = vec![
        "msg_id",
        "engine_uuid",
        "label",
        "stdout",
        "submitted",
        "completed",
        "header",
        "metadata",
    ];
    prop::collection::vec((prop::sample::select(cols), condition()), 0..3).prop_map(|terms| {
        Value::Object(terms.into_iter().map(|(c, v)| (c.to_owned(), v)).collect())
    })
}

fn ids(recs: Vec<TaskRecord>) -> Vec<String> {
    recs.into_iter().map(|r| r.msg_id).collect()
}

fn has_null_in_list(q: &Value) -> bool {
    q.as_object().into_iter().flatten().any(|(_, cond)| {
        cond.as_object().into_iter().flatten().any(|(op, arg)| {
            (op == "$in" || op == "$nin")
                && arg.as_array().is_some_and(|a| a.iter().any(Value::is_null))
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn memory_and_sqlite_agree(recs in records(), qv in query()) {
        let Ok(q) = Query::parse(&qv) else {
            return Ok(());
        };
        let mut mem = MemoryStore::default();
        let mut sql = SqliteStore::in_memory().unwrap();
        for r in &recs {
            mem.add_record(r.clone()).unwrap();
            sql.add_record(r.clone()).unwrap();
        }
        let expected = ids(mem.find_records(&q).unwrap());
        let brute: Vec<String> = ids(recs.iter().filter(|r| q.matches(r)).cloned().collect());
        let mut sorted_expected = expected.clone();
        sorted_expected.sort();
        let mut sorted_brute = brute;
        sorted_brute.sort();
        prop_assert_eq!(&sorted_expected, &sorted_brute);

        match sql.find_records(&q) {
            Err(e) => {
                prop_assert!(has_null_in_list(&qv), "unexpected error {e:?} for {qv}");
                prop_assert_eq!(e.ename(), "ValueError");
                return Ok(());
            }
            Ok(found) => prop_assert_eq!(&ids(found), &expected, "query {}", qv),
        }

        // the SQL alone must be exact whenever it claims to be
        let rendered = render(&q).unwrap();
        if rendered.exact {
            let raw = sql.select(&rendered.where_sql, &rendered.params).unwrap();
            prop_assert_eq!(&ids(raw), &expected, "SQL {} for {}", rendered.where_sql, qv);
        }

        mem.drop_matching_records(&q).unwrap();
        sql.drop_matching_records(&q).unwrap();
        prop_assert_eq!(
            ids(mem.find_records(&Query::all()).unwrap()),
            ids(sql.find_records(&Query::all()).unwrap())
        );
        prop_assert_eq!(mem.len(), recs.len() - expected.len());
    }

    #[test]
    fn fnmatch_agrees_with_sqlite_glob(pat in glob_pattern()) {
        let conn = glob_table();
        prop_assert_eq!(rust_glob(&pat), sql_glob(&conn, &pat), "pattern {:?}", pat);
    }
}

fn glob_table() -> rusqlite::Connection {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE TABLE texts (i INTEGER, t TEXT)")
        .unwrap();
    for (i, t) in crate::glob::tests::fixture_texts().iter().enumerate() {
        conn.execute(
            "INSERT INTO texts VALUES (?1, ?2)",
            rusqlite::params![i as i64, t],
        )
        .unwrap();
    }
    conn
}

fn rust_glob(pat: &str) -> Option<u128> {
    let p = Pattern::new(pat);
    p.to_sqlite_glob()?;
    Some(
        crate::glob::tests::fixture_texts()
            .iter()
            .enumerate()
            .filter(|(_, t)| p.matches(t))
            .fold(0u128, |m, (i, _)| m | 1 << i),
    )
}

/// Bitmask of fixture texts SQLite's GLOB matches with the translation,
/// `None` when the pattern is left to Rust.
fn sql_glob(conn: &rusqlite::Connection, pat: &str) -> Option<u128> {
    let translated = Pattern::new(pat).to_sqlite_glob()?;
    let Some(g) = translated else {
        return Some(0);
    };
    let mut stmt = conn
        .prepare_cached("SELECT i FROM texts WHERE t GLOB ?1")
        .unwrap();
    let rows = stmt.query_map([g], |r| r.get::<_, i64>(0)).unwrap();
    Some(rows.fold(0u128, |m, i| m | 1 << i.unwrap()))
}

/// Every fixture pattern: the SQLite translation matches exactly what
/// CPython's fnmatch matches, and almost every pattern is translatable.
#[test]
fn sqlite_glob_agrees_with_cpython_fixture() {
    let conn = glob_table();
    let mut translated = 0;
    let cases = crate::glob::tests::fixture_cases();
    for (pat, want) in &cases {
        if let Some(got) = sql_glob(&conn, pat) {
            assert_eq!(got, *want, "pattern {pat:?}");
            translated += 1;
        }
    }
    assert!(
        translated * 10 > cases.len() * 9,
        "{translated} of {}",
        cases.len()
    );
}

/// The Hub drives every backend through `Box<dyn TaskStore>`; the common
/// lifecycle (IOPub first, request merge, result, purge) must behave the
/// same on the two that store data.
#[test]
fn backends_share_the_hub_lifecycle() {
    let stores: Vec<Box<dyn TaskStore>> = vec![
        Box::new(MemoryStore::default()),
        Box::new(SqliteStore::in_memory().unwrap()),
    ];
    for mut db in stores {
        let name = db.backend_name();
        // IOPub arrives before the request: the Hub creates an empty record
        assert!(db.get_record("m1").unwrap_err().is_key_error(), "{name}");
        db.add_record(TaskRecord {
            stdout: Some("early ".into()),
            ..TaskRecord::empty("m1")
        })
        .unwrap();
        // then the request copy is merged in
        let mut req = TaskRecord {
            msg_id: "m1".into(),
            submitted: Some(date(0)),
            buffers: vec![Bytes::from_static(b"\x00f\x00")],
            queue: Some("task".into()),
            ..TaskRecord::empty("m1")
        };
        let existing = db.get_record("m1").unwrap();
        assert!(req.merge_from_existing(&existing).is_empty(), "{name}");
        db.update_record("m1", &mut |r| *r = req.clone()).unwrap();
        db.add_record(TaskRecord {
            msg_id: "m2".into(),
            submitted: Some(date(1)),
            ..TaskRecord::empty("m2")
        })
        .unwrap();
        // stream output and the result
        db.update_record("m1", &mut |r| {
            r.stdout.get_or_insert_with(String::new).push_str("late");
            r.completed = Some(date(2));
            r.result_buffers = vec![Bytes::from_static(b"res")];
        })
        .unwrap();
        let r = db.get_record("m1").unwrap();
        assert_eq!(r.stdout.as_deref(), Some("early late"), "{name}");
        assert_eq!(r.buffers, vec![Bytes::from_static(b"\x00f\x00")], "{name}");
        assert_eq!(db.get_history().unwrap(), vec!["m1", "m2"], "{name}");
        let q = Query::parse(&json!({"msg_id": {"$in": ["m1", "m2", "zz"]}})).unwrap();
        assert_eq!(
            ids(db.find_records(&q).unwrap()),
            vec!["m1", "m2"],
            "{name}"
        );
        // purge_request "all": drop completed
        db.drop_matching_records(&Query::parse(&json!({"completed": {"$ne": null}})).unwrap())
            .unwrap();
        assert_eq!(db.get_history().unwrap(), vec!["m2"], "{name}");
        assert!(!db.contains("m1") && db.contains("m2"), "{name}");
        assert_eq!(db.len(), 1, "{name}");
        db.flush().unwrap();
    }
}
