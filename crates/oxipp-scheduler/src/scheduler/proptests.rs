//! Property test: random engines, tasks (with dependencies, targets, retries, timeouts) and
//! replies, checked against invariants after every call.

use super::*;
use crate::Dependency;
use proptest::prelude::*;
use std::collections::HashMap;

#[derive(Clone, Debug)]
enum Op {
    Submit {
        /// indexes into the ids submitted so far
        deps: Vec<usize>,
        /// 0 none, 1 after, 2 follow, 3 both
        kind: u8,
        all: bool,
        /// 0 success, 1 failure, 2 both
        flags: u8,
        bogus: bool,
        targets: Vec<usize>,
        retries: u8,
        timeout_ms: u16,
    },
    Reply {
        pick: usize,
        /// 0 ok, 1 error, 2 unmet dependency, 3 aborted
        outcome: u8,
    },
    AddEngine,
    RemoveEngine {
        pick: usize,
    },
    Stranded {
        pick: usize,
    },
    Tick {
        ms: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (
            prop::collection::vec(0usize..1000, 0..3),
            0u8..4,
            any::<bool>(),
            0u8..3,
            prop::bool::weighted(0.05),
            prop::collection::vec(0usize..1000, 0..3),
            0u8..4,
            1u16..3000,
        )
            .prop_map(|(deps, kind, all, flags, bogus, targets, retries, timeout_ms)| {
                Op::Submit { deps, kind, all, flags, bogus, targets, retries, timeout_ms }
            }),
        6 => (0usize..1000, 0u8..4).prop_map(|(pick, outcome)| Op::Reply { pick, outcome }),
        1 => Just(Op::AddEngine),
        1 => (0usize..1000).prop_map(|pick| Op::RemoveEngine { pick }),
        1 => (0usize..1000).prop_map(|pick| Op::Stranded { pick }),
        1 => (1u16..2000).prop_map(|ms| Op::Tick { ms }),
    ]
}

struct World {
    s: TaskScheduler,
    hwm: u32,
    now: Instant,
    live: Vec<String>,
    next_engine: usize,
    submitted: Vec<String>,
    req: HashMap<String, TaskRequest>,
    running: HashMap<String, String>,
    stranded: Vec<(String, String)>,
    ended: HashMap<String, u32>,
    /// id → (ok, engine it ran on)
    outcome: HashMap<String, (bool, Option<String>)>,
    blacklist: HashSet<(String, String)>,
}

impl World {
    fn sets(&self, engine: Option<&str>) -> (HashSet<String>, HashSet<String>) {
        let mut c = HashSet::new();
        let mut f = HashSet::new();
        for (id, (ok, e)) in &self.outcome {
            if engine.is_some() && e.as_deref() != engine {
                continue;
            }
            if *ok {
                c.insert(id.clone());
            } else {
                f.insert(id.clone());
            }
        }
        (c, f)
    }

    /// Check a batch of actions; `replied` = (msg_id, ok, engine) of the reply that caused it.
    fn apply(&mut self, actions: &[Action], replied: Option<(&str, bool, &str)>) {
        for a in actions {
            match a {
                Action::Run { msg_id, engine } => {
                    assert!(self.live.contains(engine), "run on dead engine {engine}");
                    assert!(self.s.is_pending(msg_id));
                    assert!(!self.running.contains_key(msg_id), "{msg_id} runs twice");
                    assert!(
                        !self.blacklist.contains(&(msg_id.clone(), engine.clone())),
                        "{msg_id} ran on blacklisted {engine}"
                    );
                    let r = &self.req[msg_id];
                    assert!(r.targets.is_empty() || r.targets.contains(engine));
                    let (c, f) = self.sets(None);
                    assert!(r.after.check(&c, &f), "{msg_id} ran before its `after`");
                    let (c, f) = self.sets(Some(engine));
                    assert!(
                        r.follow.check(&c, &f),
                        "{msg_id} broke `follow` on {engine}"
                    );
                    self.running.insert(msg_id.clone(), engine.clone());
                }
                Action::Relay { msg_id } => {
                    let (id, ok, engine) = replied.expect("relay only answers a reply");
                    assert_eq!(id, msg_id);
                    *self.ended.entry(msg_id.clone()).or_default() += 1;
                    self.outcome
                        .insert(msg_id.clone(), (ok, Some(engine.to_string())));
                }
                Action::Fail { msg_id, .. } => {
                    assert!(!self.running.contains_key(msg_id));
                    assert!(!self.s.is_pending(msg_id));
                    *self.ended.entry(msg_id.clone()).or_default() += 1;
                    self.outcome.insert(msg_id.clone(), (false, None));
                }
            }
        }
        // loads
        let mut per_engine: HashMap<&str, usize> = HashMap::new();
        for e in self.running.values() {
            *per_engine.entry(e).or_default() += 1;
        }
        for (e, l) in self.s.loads() {
            assert!(self.hwm == 0 || l <= self.hwm as usize, "{e} over hwm");
            assert_eq!(per_engine.get(e).copied().unwrap_or(0), l, "load of {e}");
        }
        self.s.assert_consistent();
    }

    fn reply(&mut self, id: &str, engine: &str, o: Outcome) {
        // whatever happens, the task no longer runs on `engine`
        match self.stranded.iter().position(|(_, m)| m == id) {
            Some(i) => {
                self.stranded.remove(i);
            }
            None => assert_eq!(self.running.remove(id).as_deref(), Some(engine)),
        }
        let actions = self.s.on_reply(engine, id, o, self.now);
        let fin = actions.iter().any(
            |a| matches!(a, Action::Relay { msg_id } | Action::Fail { msg_id, .. } if msg_id == id),
        );
        if !fin {
            // retried or refused: the engine is now blacklisted for this task
            self.blacklist.insert((id.to_string(), engine.to_string()));
        }
        assert_eq!(fin, !self.s.is_pending(id));
        self.apply(&actions, Some((id, o.ok, engine)));
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Submit {
                deps,
                kind,
                all,
                flags,
                bogus,
                targets,
                retries,
                timeout_ms,
            } => {
                let id = format!("t{}", self.submitted.len());
                let mut ids: Vec<String> = if self.submitted.is_empty() {
                    vec![]
                } else {
                    deps.iter()
                        .map(|d| self.submitted[d % self.submitted.len()].clone())
                        .collect()
                };
                if bogus {
                    ids.push("bogus".into());
                }
                let dep = Dependency {
                    ids: ids.into_iter().collect(),
                    all,
                    success: flags != 1,
                    failure: flags >= 1,
                };
                let targets = if self.live.is_empty() {
                    vec![]
                } else {
                    targets
                        .iter()
                        .map(|t| self.live[t % self.live.len()].clone())
                        .collect()
                };
                let req = TaskRequest {
                    msg_id: id.clone(),
                    targets,
                    after: if kind & 1 == 1 {
                        dep.clone()
                    } else {
                        Dependency::default()
                    },
                    follow: if kind & 2 == 2 {
                        dep
                    } else {
                        Dependency::default()
                    },
                    timeout: Some(Duration::from_millis(u64::from(timeout_ms))),
                    retries: u32::from(retries),
                };
                self.submitted.push(id.clone());
                self.req.insert(id, req.clone());
                let actions = self.s.submit(req, self.now);
                self.apply(&actions, None);
            }
            Op::Reply { pick, outcome } => {
                if self.running.is_empty() {
                    return;
                }
                let mut ids: Vec<(&String, &String)> = self.running.iter().collect();
                ids.sort();
                let (id, e) = ids[pick % ids.len()];
                let (id, e) = (id.clone(), e.clone());
                let o = match outcome {
                    0 => Outcome::OK,
                    1 => Outcome::FAILED,
                    2 => Outcome::UNMET,
                    _ => Outcome::from_reply("aborted", true),
                };
                self.reply(&id, &e, o);
            }
            Op::AddEngine => {
                let e = format!("e{}", self.next_engine);
                self.next_engine += 1;
                self.live.push(e.clone());
                let actions = self.s.add_engine(&e, self.now);
                self.apply(&actions, None);
            }
            Op::RemoveEngine { pick } => {
                if self.live.is_empty() {
                    return;
                }
                let e = self.live.remove(pick % self.live.len());
                let mut expect: Vec<String> = self
                    .running
                    .iter()
                    .filter(|(_, en)| **en == e)
                    .map(|(m, _)| m.clone())
                    .collect();
                let got = self.s.remove_engine(&e);
                let mut sorted = got.clone();
                sorted.sort();
                expect.sort();
                assert_eq!(sorted, expect, "stranded tasks of {e}");
                for m in got {
                    self.running.remove(&m);
                    self.stranded.push((e.clone(), m));
                }
                self.apply(&[], None);
            }
            Op::Stranded { pick } => {
                if self.stranded.is_empty() {
                    return;
                }
                let (e, id) = self.stranded[pick % self.stranded.len()].clone();
                self.reply(&id, &e, Outcome::FAILED);
            }
            Op::Tick { ms } => {
                self.now += Duration::from_millis(u64::from(ms));
                let actions = self.s.poll_timeouts(self.now);
                self.apply(&actions, None);
            }
        }
    }

    /// Keep engines replying until nothing is left in flight.
    fn drain(&mut self) {
        for _ in 0..10_000 {
            if self.s.in_flight() == 0 {
                break;
            }
            if self.live.is_empty() {
                self.step(Op::AddEngine);
            }
            while !self.stranded.is_empty() {
                self.step(Op::Stranded { pick: 0 });
            }
            while !self.running.is_empty() {
                self.step(Op::Reply {
                    pick: 0,
                    outcome: 0,
                });
            }
            self.step(Op::Tick { ms: 1000 });
        }
        assert_eq!(self.s.in_flight(), 0, "drained");
        assert_eq!(self.s.queued_len(), 0);
        assert_eq!(self.s.next_deadline(), None);
        for id in &self.submitted {
            assert_eq!(self.ended.get(id), Some(&1), "{id} ended exactly once");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold(
        scheme in prop_oneof![
            Just(Scheme::LeastLoad), Just(Scheme::Lru), Just(Scheme::PlainRandom),
            Just(Scheme::TwoBin), Just(Scheme::Weighted)
        ],
        hwm in 0u32..4,
        engines in 0usize..5,
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut w = World {
            s: TaskScheduler::new(scheme, hwm, seed),
            hwm,
            now: Instant::now(),
            live: vec![],
            next_engine: 0,
            submitted: vec![],
            req: HashMap::new(),
            running: HashMap::new(),
            stranded: vec![],
            ended: HashMap::new(),
            outcome: HashMap::new(),
            blacklist: HashSet::new(),
        };
        for _ in 0..engines {
            w.step(Op::AddEngine);
        }
        for op in ops {
            w.step(op);
        }
        w.drain();
    }
}
