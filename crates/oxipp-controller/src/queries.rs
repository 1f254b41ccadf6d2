//! The Hub's query channel: connection, registration, and every client query.

use std::time::{Duration, Instant};

use bytes::Bytes;
use oxipp_taskdb::{Column, DbError, Dict, Query};
use oxipp_wire::errors::{error_content, py_repr, py_repr_list};
use oxipp_wire::session::encode;
use oxipp_wire::{dates, msg_types as mt, Frame, Message};
use serde_json::{json, Map, Value};

use crate::core::{Controller, Inbound};
use crate::outbox::Outbox;

/// Routing id used for tasks the Hub resubmits itself. Replies are recorded; the one sent to
/// this id is dropped by ZeroMQ, since no client has it.
pub(crate) const RESUBMIT_CLIENT: &[u8] = b"\x00oxipp-hub-resubmit";

/// The strings of a JSON array (other elements skipped), as the Python Hub iterates them.
pub(crate) fn strings(a: &[Value]) -> Vec<String> {
    a.iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn db_error(e: &DbError) -> Value {
    error_content(e.ename(), &e.to_string())
}

impl Controller {
    pub(crate) fn on_query(&mut self, inb: Inbound, now: Instant, out: &mut dyn Outbox) {
        if inb.msg.idents.is_empty() {
            self.stats.bump("query_no_ident");
            return;
        }
        let idents = inb.msg.idents.clone();
        let parent = inb.msg.header.clone();
        let reply = |t: &str| mt::reply_type(t);
        let msg_type = inb.fields.msg_type.clone();
        let content = match inb.msg.content_map() {
            Ok(c) => c,
            Err(e) => {
                self.stats.bump("query_bad_content");
                let c = error_content("ValueError", &format!("invalid content: {e}"));
                self.reply_query(&idents, mt::HUB_ERROR, Some(&parent), c, vec![], out);
                return;
            }
        };
        let (reply_type, c, buffers): (String, Value, Vec<Frame>) = match msg_type.as_str() {
            mt::CONNECTION_REQUEST => {
                let engines: Map<String, Value> = self
                    .registry
                    .engines()
                    .map(|e| (e.id.to_string(), Value::String(e.uuid)))
                    .collect();
                (
                    reply(&msg_type),
                    json!({"status": "ok", "engines": engines}),
                    vec![],
                )
            }
            mt::REGISTRATION_REQUEST => return self.on_registration_request(&inb, now, out),
            mt::UNREGISTRATION_REQUEST => return self.on_unregistration_request(&inb, now, out),
            mt::QUEUE_REQUEST => match self.queue_status(&content) {
                Ok(c) => (reply(&msg_type), c, vec![]),
                Err(c) => (mt::HUB_ERROR.into(), c, vec![]),
            },
            mt::RESULT_REQUEST => {
                let (c, b) = self.get_results(&content);
                (reply(&msg_type), c, b)
            }
            mt::HISTORY_REQUEST => match self.db.get_history() {
                Ok(h) => (
                    reply(&msg_type),
                    json!({"status": "ok", "history": h}),
                    vec![],
                ),
                Err(e) => (reply(&msg_type), db_error(&e), vec![]),
            },
            mt::DB_REQUEST => {
                let (c, b) = self.db_query(&content);
                (reply(&msg_type), c, b)
            }
            mt::PURGE_REQUEST => (reply(&msg_type), self.purge(&content), vec![]),
            mt::RESUBMIT_REQUEST => (reply(&msg_type), self.resubmit(&content, now, out), vec![]),
            mt::SHUTDOWN_REQUEST => {
                self.reply_query(
                    &idents,
                    mt::SHUTDOWN_REPLY,
                    Some(&parent),
                    json!({"status": "ok"}),
                    vec![],
                    out,
                );
                self.notify(
                    mt::SHUTDOWN_NOTIFICATION,
                    json!({"status": "ok"}),
                    Some(&parent),
                    out,
                );
                tracing::info!("hub::shutdown requested by a client; exiting");
                self.exit_at = Some(now + Duration::from_millis(200));
                return;
            }
            mt::LOAD_REQUEST => (reply(&msg_type), self.load_status(), vec![]),
            mt::BECOME_DASK_REQUEST => {
                return self.on_become_dask(idents, parent, &content, now, out)
            }
            mt::STOP_DISTRIBUTED_REQUEST => return self.on_stop_distributed(idents, parent, out),
            other => {
                self.stats.bump("query_unknown_type");
                tracing::warn!("hub::unknown message type {other:?} on the query channel");
                let c = error_content(
                    "KeyError",
                    &py_repr(&format!("Bad Message Type: {}", py_repr(other))),
                );
                (mt::HUB_ERROR.into(), c, vec![])
            }
        };
        self.reply_query(&idents, &reply_type, Some(&parent), c, buffers, out);
    }

    /// Engine ids for a `targets` value (None = all; ints or uuids), or the stock error.
    fn validate_targets(&self, targets: Option<&Value>) -> Result<Vec<u32>, Value> {
        let list: Vec<Value> = match targets {
            None | Some(Value::Null) => return Ok(self.registry.ids().collect()),
            Some(Value::Array(a)) => a.clone(),
            Some(v) => vec![v.clone()],
        };
        let mut ids = Vec::new();
        let mut bad = Vec::new();
        for t in &list {
            let id = match t {
                Value::Number(n) => n
                    .as_u64()
                    .map(|v| v as u32)
                    .filter(|id| self.registry.uuid_of(*id).is_some()),
                Value::String(s) => self.registry.id_of(s),
                _ => None,
            };
            match id {
                Some(id) => ids.push(id),
                None => bad.push(t.to_string()),
            }
        }
        if !bad.is_empty() {
            return Err(error_content(
                "IndexError",
                &format!("No Such Engine: [{}]", bad.join(", ")),
            ));
        }
        if ids.is_empty() {
            return Err(error_content("IndexError", "No Engines Registered"));
        }
        Ok(ids)
    }

    fn queue_status(&mut self, content: &Map<String, Value>) -> Result<Value, Value> {
        let ids = self.validate_targets(content.get("targets"))?;
        let verbose = content
            .get("verbose")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut c = Map::new();
        c.insert("status".into(), json!("ok"));
        for id in ids {
            let e = self.book.engine(id);
            let v = if verbose {
                json!({
                    "queue": e.queue.iter().collect::<Vec<_>>(),
                    "completed": e.completed.iter().collect::<Vec<_>>(),
                    "tasks": e.tasks.iter().collect::<Vec<_>>(),
                })
            } else {
                json!({"queue": e.queue.len(), "completed": e.completed_total, "tasks": e.tasks.len()})
            };
            c.insert(id.to_string(), v);
        }
        let unassigned = if verbose {
            json!(self.book.unassigned.iter().collect::<Vec<_>>())
        } else {
            json!(self.book.unassigned.len())
        };
        c.insert("unassigned".into(), unassigned);
        Ok(Value::Object(c))
    }

    fn load_status(&self) -> Value {
        let mut c = Map::new();
        c.insert("status".into(), json!("ok"));
        for e in self.registry.engines() {
            let load = self
                .book
                .engines
                .get(&e.id)
                .map(|b| b.queue.len() + b.tasks.len())
                .unwrap_or(0);
            c.insert(e.id.to_string(), json!(load));
        }
        Value::Object(c)
    }

    fn get_results(&mut self, content: &Map<String, Value>) -> (Value, Vec<Frame>) {
        let mut msg_ids = match content.get("msg_ids").and_then(Value::as_array) {
            Some(a) => strings(a),
            None => return (error_content("KeyError", "'msg_ids'"), vec![]),
        };
        msg_ids.sort();
        msg_ids.dedup();
        let status_only = content
            .get("status_only")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut pending = Vec::new();
        let mut completed = Vec::new();
        let mut c = Map::new();
        let mut buffers = Vec::new();
        for msg_id in &msg_ids {
            if self.book.pending.contains(msg_id) {
                pending.push(msg_id.clone());
                continue;
            }
            let rec = self.db.get_record(msg_id);
            match rec {
                Ok(r) if r.completed.is_some() || r.result_content.is_some() => {
                    completed.push(msg_id.clone());
                    if !status_only {
                        c.insert(msg_id.clone(), extract_record(&r));
                        buffers.extend(r.result_buffers.iter().cloned());
                    }
                }
                Ok(_) => pending.push(msg_id.clone()),
                Err(_) if status_only && self.book.recently_completed(msg_id) => {
                    completed.push(msg_id.clone())
                }
                Err(e) => {
                    // Stock reports unknown ids as its own KeyError; other errors (culled
                    // records, NoDB) keep the database's wording.
                    let evalue = match &e {
                        DbError::Key(_) => py_repr(&format!("No such message: {msg_id}")),
                        other => other.to_string(),
                    };
                    return (error_content(e.ename(), &evalue), vec![]);
                }
            }
        }
        c.insert("status".into(), json!("ok"));
        c.insert("pending".into(), json!(pending));
        c.insert("completed".into(), json!(completed));
        (Value::Object(c), buffers)
    }

    fn db_query(&mut self, content: &Map<String, Value>) -> (Value, Vec<Frame>) {
        let query = match Query::parse(content.get("query").unwrap_or(&json!({}))) {
            Ok(q) => q,
            Err(e) => return (db_error(&e), vec![]),
        };
        let keys: Option<Vec<String>> = match content.get("keys") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(vec![s.clone()]),
            Some(Value::Array(a)) => Some(strings(a)),
            Some(other) => {
                return (
                    error_content(
                        "TypeError",
                        &format!("keys must be a list of str, not {other}"),
                    ),
                    vec![],
                )
            }
        };
        let cols: Option<Vec<Column>> = match &keys {
            None => None,
            Some(ks) => {
                let mut cols = Vec::new();
                for k in ks {
                    match Column::parse(k) {
                        Some(c) => cols.push(c),
                        None => {
                            return (
                                error_content("KeyError", &py_repr(&format!("Unknown key: {k}"))),
                                vec![],
                            )
                        }
                    }
                }
                Some(cols)
            }
        };
        let records = match self.db.find_records(&query) {
            Ok(r) => r,
            Err(e) => return (db_error(&e), vec![]),
        };
        let want = |name: &str| keys.as_ref().is_some_and(|k| k.iter().any(|x| x == name));
        let (want_bufs, want_rbufs) = (want("buffers"), want("result_buffers"));
        let mut buffers = Vec::new();
        let mut buffer_lens = Vec::new();
        let mut result_buffer_lens = Vec::new();
        let mut out_records = Vec::with_capacity(records.len());
        for r in &records {
            if want_bufs {
                buffer_lens.push(r.buffers.len());
                buffers.extend(r.buffers.iter().cloned());
            }
            if want_rbufs {
                result_buffer_lens.push(r.result_buffers.len());
                buffers.extend(r.result_buffers.iter().cloned());
            }
            out_records.push(Value::Object(r.to_json(cols.as_deref())));
        }
        let c = json!({
            "status": "ok",
            "records": out_records,
            "buffer_lens": if want_bufs { json!(buffer_lens) } else { Value::Null },
            "result_buffer_lens": if want_rbufs { json!(result_buffer_lens) } else { Value::Null },
        });
        (c, buffers)
    }

    fn purge(&mut self, content: &Map<String, Value>) -> Value {
        let ok = json!({"status": "ok"});
        let msg_ids = content.get("msg_ids").cloned().unwrap_or(json!([]));
        if msg_ids == json!("all") {
            let q = Query::parse(&json!({"completed": {"$ne": null}})).expect("static query");
            return match self.db.drop_matching_records(&q) {
                Ok(()) => ok,
                Err(e) => db_error(&e),
            };
        }
        let ids = msg_ids.as_array().map(|a| strings(a)).unwrap_or_default();
        if let Some(p) = ids.iter().find(|m| self.book.pending.contains(*m)) {
            return error_content("IndexError", &format!("msg pending: {}", py_repr(p)));
        }
        if !ids.is_empty() {
            let q = Query::parse(&json!({"msg_id": {"$in": ids}})).expect("static query");
            if let Err(e) = self.db.drop_matching_records(&q) {
                return db_error(&e);
            }
        }
        let eids = content
            .get("engine_ids")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for eid in eids {
            let uuid = eid
                .as_u64()
                .and_then(|id| self.registry.uuid_of(id as u32))
                .map(str::to_string);
            let Some(uuid) = uuid else {
                return error_content("IndexError", &format!("No such engine: {eid}"));
            };
            let q = Query::parse(&json!({"engine_uuid": uuid, "completed": {"$ne": null}}))
                .expect("static query");
            if let Err(e) = self.db.drop_matching_records(&q) {
                return db_error(&e);
            }
        }
        ok
    }

    /// Re-runs tasks under new msg_ids through the task scheduler (stock semantics: the
    /// original header with a fresh msg_id and date, parent = that new header, empty
    /// metadata, the original content and buffers).
    fn resubmit(
        &mut self,
        content: &Map<String, Value>,
        now: Instant,
        out: &mut dyn Outbox,
    ) -> Value {
        let ids = content
            .get("msg_ids")
            .and_then(Value::as_array)
            .map(|a| strings(a))
            .unwrap_or_default();
        let mut records = Vec::new();
        let mut missing = Vec::new();
        for id in &ids {
            match self.db.get_record(id) {
                Ok(r) if r.header.is_some() => records.push(r),
                Ok(_) => missing.push(id.clone()),
                Err(DbError::Key(_)) => missing.push(id.clone()),
                Err(e) => return db_error(&e),
            }
        }
        if !missing.is_empty() {
            return error_content(
                "KeyError",
                &py_repr(&format!("No such msg(s): {}", py_repr_list(&missing))),
            );
        }
        let mut resubmitted = Map::new();
        for r in records {
            let mut header = r.header.clone().map(Dict::into_map).unwrap_or_default();
            let new_id = self.hub_session.next_msg_id();
            header.insert("msg_id".into(), json!(new_id));
            header.insert("date".into(), json!(dates::now_iso()));
            let header_bytes = Bytes::from(encode(&Value::Object(header)));
            let mut m = Message {
                idents: vec![Bytes::from_static(RESUBMIT_CLIENT)],
                signature: Bytes::new(),
                header: header_bytes.clone(),
                parent: header_bytes,
                metadata: Bytes::from_static(b"{}"),
                content: Bytes::from(encode(&Value::Object(
                    r.content.clone().map(Dict::into_map).unwrap_or_default(),
                ))),
                buffers: r.buffers.clone(),
            };
            self.hub_session.sign(&mut m);
            let Ok(fields) = m.header_fields() else {
                continue;
            };
            resubmitted.insert(r.msg_id.clone(), json!(new_id));
            self.on_task_request(Inbound { msg: m, fields }, now, out);
            let nid = new_id.clone();
            let _ = self
                .db
                .update_record(&r.msg_id, &mut |rec| rec.resubmitted = Some(nid.clone()));
        }
        json!({"status": "ok", "resubmitted": resubmitted})
    }
}

/// The `result_reply` view of a record.
fn extract_record(r: &oxipp_taskdb::TaskRecord) -> Value {
    let g = |c: Column| r.get(c).unwrap_or(Value::Null);
    json!({
        "header": g(Column::Header),
        "metadata": g(Column::Metadata),
        "result_metadata": g(Column::ResultMetadata),
        "result_header": g(Column::ResultHeader),
        "result_content": g(Column::ResultContent),
        "received": g(Column::Received),
        "io": {
            "execute_input": g(Column::ExecuteInput),
            "execute_result": g(Column::ExecuteResult),
            "error": g(Column::Error),
            "stdout": g(Column::Stdout),
            "stderr": g(Column::Stderr),
        },
    })
}
