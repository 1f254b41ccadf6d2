//! A load-balanced task as the scheduler sees it: the request's msg_id plus the scheduling
//! metadata the LoadBalancedView puts on every `apply_request`
//! (`{"after", "follow", "timeout", "targets", "retries", "label"}`).

use std::time::Duration;

use serde_json::{Map, Value};

use crate::dependency::{truthy, Dependency};

/// Scheduling metadata of one submitted task.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRequest {
    pub msg_id: String,
    /// Engine uuids the task may run on; empty = any engine.
    pub targets: Vec<String>,
    /// Time dependency: the task may only start once these finished (as required).
    pub after: Dependency,
    /// Location dependency: the task must run where these ran.
    pub follow: Dependency,
    /// Longest time the task may *wait in the scheduler* (not run time) before failing with
    /// `TaskTimeout`; re-armed every time the task is (re-)queued. `None` = no limit.
    pub timeout: Option<Duration>,
    /// How many failed runs are retried on another engine.
    pub retries: u32,
}

impl TaskRequest {
    /// A dependency-free, untargeted task without timeout or retries.
    pub fn new(msg_id: impl Into<String>) -> Self {
        TaskRequest {
            msg_id: msg_id.into(),
            targets: Vec::new(),
            after: Dependency::default(),
            follow: Dependency::default(),
            timeout: None,
            retries: 0,
        }
    }

    /// Build from the `apply_request` msg_id and its metadata object. Missing keys take
    /// stock's defaults. Parsing follows stock `TaskScheduler.dispatch_submission`:
    /// * `after`: any Python-falsy value (`null`, `[]`, `{}`, `""`, `0`, `false`) = none;
    ///   otherwise parsed by [`Dependency::from_json`].
    /// * `follow`: `null`/missing = none, otherwise [`Dependency::from_json`].
    /// * `timeout`: seconds; `null`/`0`/`false` = none; negative = already expired (fails at
    ///   the next [`poll_timeouts`](crate::TaskScheduler::poll_timeouts) if it has to wait);
    ///   too large for a `Duration` = none.
    /// * `targets`: list of engine uuid strings (`null` = any).
    /// * `retries`: integer; negative = 0 (stock only retries while `retries > 0`).
    ///
    /// Malformed values are an `Err` describing the problem (stock logs and drops such a
    /// request; the shell may reject it with [`crate::TaskScheduler::reject`]).
    pub fn from_metadata(msg_id: &str, md: &Map<String, Value>) -> Result<Self, String> {
        let after = match md.get("after") {
            Some(v) if truthy(v) => Dependency::from_json(v).map_err(|e| format!("after: {e}"))?,
            _ => Dependency::default(),
        };
        let follow = match md.get("follow") {
            Some(v) => Dependency::from_json(v).map_err(|e| format!("follow: {e}"))?,
            None => Dependency::default(),
        };
        let timeout = match md.get("timeout") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => None,
            Some(Value::Bool(true)) => Some(Duration::from_secs(1)),
            Some(Value::Number(n)) => {
                let secs = n.as_f64().ok_or("timeout: not a number")?;
                if secs.is_nan() {
                    return Err("timeout: NaN is not a valid timeout".into());
                }
                if secs == 0.0 {
                    None
                } else if secs < 0.0 {
                    Some(Duration::ZERO)
                } else {
                    Duration::try_from_secs_f64(secs).ok()
                }
            }
            Some(other) => {
                return Err(format!(
                    "timeout: expected seconds as a number, got {other}"
                ))
            }
        };
        let targets = match md.get("targets") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|t| match t {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(format!(
                        "targets: engine uuids must be strings, got {other}"
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(format!(
                    "targets: expected a list of engine uuids, got {other}"
                ))
            }
        };
        let retries = match md.get("retries") {
            None | Some(Value::Null) => 0,
            Some(Value::Number(n)) => match (n.as_i64(), n.as_u64()) {
                (_, Some(u)) => u32::try_from(u).unwrap_or(u32::MAX),
                (Some(_negative), None) => 0,
                _ => return Err(format!("retries: expected an integer, got {n}")),
            },
            Some(other) => return Err(format!("retries: expected an integer, got {other}")),
        };
        Ok(TaskRequest {
            msg_id: msg_id.to_string(),
            targets,
            after,
            follow,
            timeout,
            retries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn md(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn stock_client_metadata() {
        // exactly what LoadBalancedView._really_apply sends
        let r = TaskRequest::from_metadata(
            "m1",
            &md(
                json!({"after": [], "follow": [], "timeout": null, "targets": [],
                        "retries": 0, "label": null}),
            ),
        )
        .unwrap();
        assert_eq!(r, TaskRequest::new("m1"));
        let r = TaskRequest::from_metadata(
            "m2",
            &md(
                json!({"after": ["a"], "follow": {"dependencies": ["b"], "all": false,
                        "success": true, "failure": true}, "timeout": 0.25,
                        "targets": ["u1", "u2"], "retries": 3}),
            ),
        )
        .unwrap();
        assert_eq!(r.after, Dependency::new(["a"]));
        assert!(!r.follow.all && r.follow.failure);
        assert_eq!(r.timeout, Some(Duration::from_millis(250)));
        assert_eq!(r.targets, vec!["u1", "u2"]);
        assert_eq!(r.retries, 3);
    }

    #[test]
    fn defaults_and_edge_values() {
        let r = TaskRequest::from_metadata("m", &Map::new()).unwrap();
        assert_eq!(r, TaskRequest::new("m"));
        let r =
            TaskRequest::from_metadata("m", &md(json!({"timeout": 0, "retries": -2, "after": 0})))
                .unwrap();
        assert_eq!((r.timeout, r.retries), (None, 0));
        assert!(r.after.is_empty());
        let r =
            TaskRequest::from_metadata("m", &md(json!({"timeout": -1.0, "after": "x"}))).unwrap();
        assert_eq!(r.timeout, Some(Duration::ZERO));
        assert_eq!(r.after, Dependency::new(["x"]));
        let r = TaskRequest::from_metadata("m", &md(json!({"timeout": 1e300}))).unwrap();
        assert_eq!(r.timeout, None);
    }

    #[test]
    fn malformed() {
        for (bad, key) in [
            (json!({"after": [1]}), "after"),
            (json!({"follow": 3}), "follow"),
            (json!({"timeout": "soon"}), "timeout"),
            (json!({"targets": "u1"}), "targets"),
            (json!({"targets": [1]}), "targets"),
            (json!({"retries": 1.5}), "retries"),
            (json!({"retries": "1"}), "retries"),
        ] {
            let err = TaskRequest::from_metadata("m", &md(bad.clone())).unwrap_err();
            assert!(err.starts_with(key), "{bad}: {err}");
        }
    }
}
