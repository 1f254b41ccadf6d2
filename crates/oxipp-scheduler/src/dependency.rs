//! Task dependencies (`after` / `follow` metadata), with the semantics of stock
//! `ipyparallel.controller.dependency.Dependency`.
//!
//! Two representations live here:
//! * [`Dependency`], the public, set-based form parsed from request metadata. Its
//!   [`check`](Dependency::check) / [`unreachable`](Dependency::unreachable) take explicit
//!   completed/failed sets exactly like the Python methods.
//! * `DepTrack` (crate-private), the per-job form the scheduler actually evaluates. It counts
//!   satisfied / unsatisfiable / outstanding dependencies so that a check is O(1) and, more
//!   importantly, does not need the global done-sets any more once the job has been
//!   submitted: the scheduler only remembers a bounded number of finished ids (see
//!   [`crate::TaskScheduler::with_done_capacity`]), and a waiting job must not change its mind
//!   because one of its dependencies was forgotten meanwhile.

use std::collections::{BTreeSet, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;

use serde_json::Value;

/// A set of msg_ids a task depends on, plus how the set is evaluated.
///
/// `all`: all ids must satisfy (else: any one). `success` / `failure`: which outcomes satisfy
/// a dependency (at least one of them is true). Defaults are stock's: `all = true`,
/// `success = true`, `failure = false`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dependency {
    pub ids: BTreeSet<String>,
    pub all: bool,
    pub success: bool,
    pub failure: bool,
}

impl Default for Dependency {
    fn default() -> Self {
        Dependency {
            ids: BTreeSet::new(),
            all: true,
            success: true,
            failure: false,
        }
    }
}

/// Python truthiness of a JSON value (stock reads `all`/`success`/`failure` and tests
/// `if after:` with Python semantics).
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

impl Dependency {
    /// A dependency on `ids` with the default flags (all, success only).
    pub fn new<I, S>(ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Dependency {
            ids: ids.into_iter().map(Into::into).collect(),
            ..Dependency::default()
        }
    }

    /// True when there is nothing to wait for (stock: `len(dep) == 0`).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Parse the wire form of `after` / `follow`:
    /// * `[]` or a list of msg_id strings (default flags);
    /// * a single msg_id string (stock's `Dependency("id")` accepts it);
    /// * `{"dependencies": [...] | "id", "all": .., "success": .., "failure": ..}` (missing
    ///   keys take the defaults; flags use Python truthiness, as stock does);
    /// * `null` is accepted as "no dependency" (stock would raise for `follow: null`, which
    ///   only drops the request; no stock client sends it).
    ///
    /// Anything else (numbers, non-string ids, nested objects, `success` and `failure` both
    /// false) is an error with a message that says what was wrong.
    pub fn from_json(v: &Value) -> Result<Dependency, String> {
        match v {
            Value::Null => Ok(Dependency::default()),
            Value::String(_) | Value::Array(_) => Ok(Dependency {
                ids: parse_ids(v)?,
                ..Dependency::default()
            }),
            Value::Object(map) => {
                // unknown keys are ignored, as stock does
                let ids = match map.get("dependencies") {
                    None | Some(Value::Null) => BTreeSet::new(),
                    Some(d) => parse_ids(d)?,
                };
                let all = map.get("all").map(truthy).unwrap_or(true);
                let success = map.get("success").map(truthy).unwrap_or(true);
                let failure = map.get("failure").is_some_and(truthy);
                if !(success || failure) {
                    return Err(
                        "invalid dependency: must depend on at least one of successes or failures"
                            .into(),
                    );
                }
                Ok(Dependency {
                    ids,
                    all,
                    success,
                    failure,
                })
            }
            other => Err(format!(
                "invalid dependency: expected a list of msg_ids or a dependency dict, got {}",
                json_kind(other)
            )),
        }
    }

    /// The wire form (`Dependency.as_dict()` in stock).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "dependencies": self.ids.iter().collect::<Vec<_>>(),
            "all": self.all,
            "success": self.success,
            "failure": self.failure,
        })
    }

    /// Whether an outcome (`ok` = the task succeeded) satisfies this dependency.
    pub(crate) fn satisfied_by(&self, ok: bool) -> bool {
        if ok {
            self.success
        } else {
            self.failure
        }
    }

    /// Stock `Dependency.check(completed, failed)`: empty → true; otherwise the ids are
    /// compared against `completed` (if `success`) ∪ `failed` (if `failure`): subset when
    /// `all`, non-disjoint otherwise.
    pub fn check<S: BuildHasher>(
        &self,
        completed: &HashSet<String, S>,
        failed: &HashSet<String, S>,
    ) -> bool {
        if self.ids.is_empty() {
            return true;
        }
        let good = |id: &String| {
            (self.success && completed.contains(id)) || (self.failure && failed.contains(id))
        };
        if self.all {
            self.ids.iter().all(good)
        } else {
            self.ids.iter().any(good)
        }
    }

    /// Stock `Dependency.unreachable(completed, failed)`: empty → false; otherwise the ids
    /// are compared against `completed` (if not `success`) ∪ `failed` (if not `failure`):
    /// non-disjoint when `all`, subset otherwise.
    pub fn unreachable<S: BuildHasher>(
        &self,
        completed: &HashSet<String, S>,
        failed: &HashSet<String, S>,
    ) -> bool {
        if self.ids.is_empty() {
            return false;
        }
        let bad = |id: &String| {
            (!self.success && completed.contains(id)) || (!self.failure && failed.contains(id))
        };
        if self.all {
            self.ids.iter().any(bad)
        } else {
            self.ids.iter().all(bad)
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn parse_ids(v: &Value) -> Result<BTreeSet<String>, String> {
    match v {
        Value::String(s) => Ok(BTreeSet::from([s.clone()])),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!(
                    "invalid dependency: msg_ids must be strings, got {}",
                    json_kind(other)
                )),
            })
            .collect(),
        other => Err(format!(
            "invalid dependency: \"dependencies\" must be a list of msg_ids, got {}",
            json_kind(other)
        )),
    }
}

/// What the scheduler knows about a dependency id at submission time.
#[derive(Clone, Debug)]
pub(crate) enum Known {
    /// Submitted, not finished (queued or running). Carries the shared id.
    InFlight(Arc<str>),
    /// Finished; `engine` is the incarnation it ran on (`None`: failed by the scheduler).
    Done { ok: bool, engine: Option<u32> },
    /// Never submitted (or forgotten).
    Unknown,
}

/// Per-job evaluation state of one [`Dependency`].
///
/// Invariant: `n == sat + unsat + outstanding.len() + unknown`, where `unknown` ids never
/// change (the job is failed with `InvalidDependency` if it has any, unless `after` was
/// already met, in which case the tracker is discarded).
#[derive(Debug, Default)]
pub(crate) struct DepTrack {
    pub all: bool,
    pub success: bool,
    pub failure: bool,
    n: u32,
    sat: u32,
    unsat: u32,
    /// Ids still in flight; resolved by [`DepTrack::resolve`] when they finish.
    pub outstanding: HashSet<Arc<str>>,
    /// Engines (incarnations) of the satisfying finished ids, in resolution order. Only
    /// meaningful for `follow`; `None` = the id was failed by the scheduler itself and so
    /// never ran anywhere.
    pub sat_engines: Vec<Option<u32>>,
    /// First reason the dependency is invalid (self-dependency or unknown id).
    pub invalid: Option<String>,
}

impl DepTrack {
    /// The empty dependency (stock's `MET`).
    pub fn met() -> Self {
        DepTrack {
            all: true,
            success: true,
            failure: false,
            ..DepTrack::default()
        }
    }

    /// Evaluate `dep` for the job `own_id` against what the scheduler knows now.
    /// `forgotten_hint` is appended to the message for unknown ids (memory bound).
    pub fn build(
        dep: &Dependency,
        own_id: &str,
        forgotten_hint: &str,
        mut lookup: impl FnMut(&str) -> Known,
    ) -> DepTrack {
        let mut t = DepTrack {
            all: dep.all,
            success: dep.success,
            failure: dep.failure,
            n: u32::try_from(dep.ids.len()).unwrap_or(u32::MAX),
            ..DepTrack::default()
        };
        for id in &dep.ids {
            if id == own_id {
                t.invalid
                    .get_or_insert_with(|| format!("task {own_id:?} depends on itself"));
                continue;
            }
            match lookup(id) {
                Known::InFlight(arc) => {
                    t.outstanding.insert(arc);
                }
                Known::Done { ok, engine } => {
                    if dep.satisfied_by(ok) {
                        t.sat += 1;
                        t.sat_engines.push(engine);
                    } else {
                        t.unsat += 1;
                    }
                }
                Known::Unknown => {
                    t.invalid.get_or_insert_with(|| {
                        format!(
                            "dependency {id:?} was never submitted to the task scheduler{forgotten_hint}"
                        )
                    });
                }
            }
        }
        t
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Stock `check(all_completed, all_failed)`.
    pub fn check(&self) -> bool {
        if self.n == 0 {
            true
        } else if self.all {
            self.sat == self.n
        } else {
            self.sat > 0
        }
    }

    /// Stock `unreachable(all_completed, all_failed)`.
    pub fn unreachable(&self) -> bool {
        if self.n == 0 {
            false
        } else if self.all {
            self.unsat > 0
        } else {
            self.unsat == self.n
        }
    }

    /// `id` finished. Returns false if it was not one of ours (already resolved).
    pub fn resolve(&mut self, id: &str, ok: bool, engine: Option<u32>) -> bool {
        if !self.outstanding.remove(id) {
            return false;
        }
        if (ok && self.success) || (!ok && self.failure) {
            self.sat += 1;
            self.sat_engines.push(engine);
        } else {
            self.unsat += 1;
        }
        true
    }

    /// For a `follow` dependency: which engine incarnations pass stock's per-engine
    /// `follow.check(completed[engine], failed[engine])`. `None` = every engine passes
    /// (empty dependency).
    pub fn allowed_engines(&self) -> Option<Vec<u32>> {
        if self.n == 0 {
            return None;
        }
        if self.all {
            // every id must have finished acceptably on *this* engine
            if self.sat != self.n {
                return Some(Vec::new());
            }
            let first = self.sat_engines[0];
            match first {
                Some(e) if self.sat_engines.iter().all(|x| *x == Some(e)) => Some(vec![e]),
                _ => Some(Vec::new()),
            }
        } else {
            let mut v: Vec<u32> = self.sat_engines.iter().flatten().copied().collect();
            v.sort_unstable();
            v.dedup();
            Some(v)
        }
    }

    /// Stock's follow impossibility test in `maybe_run` (only consulted when no engine can
    /// take the job and `follow.all`): the satisfying ids ran on more than one engine. A
    /// satisfying id that never ran anywhere (failed by the scheduler, only possible with
    /// `failure=True`) also makes it impossible; stock raises a `KeyError` there and drops
    /// the request instead.
    pub fn follow_impossible(&self) -> bool {
        if !self.all || self.sat_engines.is_empty() {
            return false;
        }
        let first = self.sat_engines[0];
        first.is_none() || self.sat_engines.iter().any(|e| *e != first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    // mirrors stock test_dependency.py: succeeded = even numbers, failed = odd numbers
    fn fixtures() -> (HashSet<String>, HashSet<String>, Vec<String>, Vec<String>) {
        let succeeded: HashSet<String> = (0..25).step_by(2).map(|i| i.to_string()).collect();
        let failed: HashSet<String> = (1..25).step_by(2).map(|i| i.to_string()).collect();
        let mixed: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        let completed: Vec<String> = (0..10).step_by(2).map(|i| i.to_string()).collect();
        (succeeded, failed, mixed, completed)
    }

    fn dep(ids: &[String], all: bool, success: bool, failure: bool) -> Dependency {
        Dependency {
            ids: ids.iter().cloned().collect(),
            all,
            success,
            failure,
        }
    }

    #[test]
    fn stock_success_only() {
        let (s, f, mixed, completed) = fixtures();
        let d = dep(&mixed, true, true, false);
        assert!(!d.check(&s, &f));
        assert!(d.unreachable(&s, &f));
        let d = dep(&mixed, false, true, false);
        assert!(d.check(&s, &f));
        assert!(!d.unreachable(&s, &f));
        let d = dep(&completed, true, true, false);
        assert!(d.check(&s, &f));
        assert!(!d.unreachable(&s, &f));
        let d = dep(&completed, false, true, false);
        assert!(d.check(&s, &f));
        assert!(!d.unreachable(&s, &f));
    }

    #[test]
    fn stock_failure_only() {
        let (s, f, mixed, completed) = fixtures();
        let d = dep(&mixed, true, false, true);
        assert!(!d.check(&s, &f));
        assert!(d.unreachable(&s, &f));
        let d = dep(&mixed, false, false, true);
        assert!(d.check(&s, &f));
        assert!(!d.unreachable(&s, &f));
        let d = dep(&completed, true, false, true);
        assert!(!d.check(&s, &f));
        assert!(d.unreachable(&s, &f));
        let d = dep(&completed, false, false, true);
        assert!(!d.check(&s, &f));
        assert!(d.unreachable(&s, &f));
    }

    #[test]
    fn success_or_failure_and_empty() {
        let (s, f, mixed, _) = fixtures();
        let d = dep(&mixed, true, true, true);
        assert!(d.check(&s, &f));
        assert!(!d.unreachable(&s, &f));
        let empty = Dependency::default();
        assert!(empty.check(&set(&[]), &set(&[])));
        assert!(!empty.unreachable(&set(&["x"]), &set(&["y"])));
        // pending ids: neither met nor unreachable
        let d = Dependency::new(["a", "b"]);
        assert!(!d.check(&set(&["a"]), &set(&[])));
        assert!(!d.unreachable(&set(&["a"]), &set(&[])));
    }

    #[test]
    fn parse_forms() {
        let d = Dependency::from_json(&json!([])).unwrap();
        assert!(d.is_empty() && d.all && d.success && !d.failure);
        let d = Dependency::from_json(&json!(["a", "b", "a"])).unwrap();
        assert_eq!(d.ids, BTreeSet::from(["a".to_string(), "b".to_string()]));
        let d = Dependency::from_json(&json!("a")).unwrap();
        assert_eq!(d.ids.len(), 1);
        let d = Dependency::from_json(
            &json!({"dependencies": ["x"], "all": false, "success": false, "failure": true}),
        )
        .unwrap();
        assert!(!d.all && !d.success && d.failure && d.ids.contains("x"));
        // missing keys: defaults; python truthiness for flags
        let d =
            Dependency::from_json(&json!({"dependencies": ["x"], "all": 0, "failure": 1})).unwrap();
        assert!(!d.all && d.success && d.failure);
        assert!(Dependency::from_json(&json!(null)).unwrap().is_empty());
        assert_eq!(Dependency::from_json(&d.to_json()).unwrap(), d);
    }

    #[test]
    fn parse_errors() {
        for bad in [
            json!(5),
            json!(true),
            json!([1]),
            json!(["a", null]),
            json!({"dependencies": 3}),
            json!({"dependencies": {"a": 1}}),
            json!({"dependencies": ["a"], "success": false, "failure": false}),
        ] {
            let err = Dependency::from_json(&bad).unwrap_err();
            assert!(err.starts_with("invalid dependency"), "{bad}: {err}");
        }
    }

    #[test]
    fn tracker_matches_set_semantics() {
        // resolve ids one by one and compare against the set-based methods each step
        let order = ["a", "b", "c"];
        let outcomes = [true, false, true];
        for all in [true, false] {
            for (success, failure) in [(true, false), (false, true), (true, true)] {
                let d = Dependency {
                    ids: order.iter().map(|s| s.to_string()).collect(),
                    all,
                    success,
                    failure,
                };
                let mut t = DepTrack::build(&d, "me", "", |id| Known::InFlight(Arc::from(id)));
                let (mut c, mut f) = (HashSet::new(), HashSet::new());
                assert_eq!(t.check(), d.check(&c, &f));
                assert_eq!(t.unreachable(), d.unreachable(&c, &f));
                for (id, ok) in order.iter().zip(outcomes) {
                    assert!(t.resolve(id, ok, Some(1)));
                    assert!(!t.resolve(id, ok, Some(1)), "resolves once");
                    if ok {
                        c.insert(id.to_string());
                    } else {
                        f.insert(id.to_string());
                    }
                    assert_eq!(t.check(), d.check(&c, &f), "{d:?} after {id}");
                    assert_eq!(t.unreachable(), d.unreachable(&c, &f), "{d:?} after {id}");
                }
            }
        }
    }

    #[test]
    fn tracker_invalid_and_follow_engines() {
        let d = Dependency::new(["me", "x"]);
        let t = DepTrack::build(&d, "me", "", |_| Known::Unknown);
        assert!(t.invalid.unwrap().contains("itself"));

        let d = Dependency::new(["a", "b"]);
        let t = DepTrack::build(&d, "me", "", |id| Known::Done {
            ok: true,
            engine: Some(if id == "a" { 1 } else { 2 }),
        });
        assert_eq!(t.allowed_engines(), Some(vec![]));
        assert!(t.follow_impossible());
        let t = DepTrack::build(&d, "me", "", |_| Known::Done {
            ok: true,
            engine: Some(7),
        });
        assert_eq!(t.allowed_engines(), Some(vec![7]));
        assert!(!t.follow_impossible());
        let any = Dependency {
            all: false,
            ..d.clone()
        };
        let t = DepTrack::build(&any, "me", "", |id| Known::Done {
            ok: true,
            engine: Some(if id == "a" { 1 } else { 2 }),
        });
        assert_eq!(t.allowed_engines(), Some(vec![1, 2]));
        assert!(!t.follow_impossible());
        assert_eq!(DepTrack::met().allowed_engines(), None);
    }
}
