//! Which engines exist: registered ones, registrations waiting for their first heartbeat, and
//! the id counter.
//!
//! Ids are never reused (stock semantics: a monotonic counter, and a requested id is granted
//! only when free), so a late message about engine 3 can never be mistaken for a new engine 3.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// A registered engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    pub id: u32,
    pub uuid: String,
}

#[derive(Debug, Clone)]
struct Pending {
    id: u32,
    deadline: Instant,
}

#[derive(Debug, Default)]
pub struct Registry {
    by_id: BTreeMap<u32, String>,
    by_uuid: HashMap<String, u32>,
    pending: HashMap<String, Pending>,
    next_id: u32,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// `uuid` is already registered or pending (stock: `KeyError("uuid '…' in use")`).
    InUse(String),
    /// Too many registrations are waiting for a heartbeat.
    Flooded(usize),
}

/// The engine state file `<profile>/log/engines<cluster_id>.json`, used by `--restore`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct StateFile {
    pub engines: BTreeMap<String, String>,
    pub next_id: u32,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_id.keys().copied()
    }

    pub fn engines(&self) -> impl Iterator<Item = Engine> + '_ {
        self.by_id.iter().map(|(id, uuid)| Engine {
            id: *id,
            uuid: uuid.clone(),
        })
    }

    pub fn uuid_of(&self, id: u32) -> Option<&str> {
        self.by_id.get(&id).map(String::as_str)
    }

    pub fn id_of(&self, uuid: &str) -> Option<u32> {
        self.by_uuid.get(uuid).copied()
    }

    pub fn is_pending(&self, uuid: &str) -> bool {
        self.pending.contains_key(uuid)
    }

    /// Starts a registration; returns the id granted.
    pub fn request(
        &mut self,
        uuid: &str,
        requested: Option<u32>,
        deadline: Instant,
        max_pending: usize,
    ) -> Result<u32, RegisterError> {
        if self.by_uuid.contains_key(uuid) || self.pending.contains_key(uuid) {
            return Err(RegisterError::InUse(uuid.to_string()));
        }
        if self.pending.len() >= max_pending {
            return Err(RegisterError::Flooded(max_pending));
        }
        let taken =
            |id: u32| self.by_id.contains_key(&id) || self.pending.values().any(|p| p.id == id);
        let id = match requested {
            Some(r) if !taken(r) => {
                self.next_id = self.next_id.max(r + 1);
                r
            }
            _ => {
                let mut id = self.next_id;
                while taken(id) {
                    id += 1;
                }
                self.next_id = id + 1;
                id
            }
        };
        self.pending
            .insert(uuid.to_string(), Pending { id, deadline });
        Ok(id)
    }

    /// Finishes a pending registration (first heartbeat seen).
    pub fn complete(&mut self, uuid: &str) -> Option<Engine> {
        let p = self.pending.remove(uuid)?;
        self.by_id.insert(p.id, uuid.to_string());
        self.by_uuid.insert(uuid.to_string(), p.id);
        Some(Engine {
            id: p.id,
            uuid: uuid.to_string(),
        })
    }

    /// Cancels a pending registration by id; returns its uuid.
    pub fn cancel_pending_id(&mut self, id: u32) -> Option<String> {
        let uuid = self
            .pending
            .iter()
            .find(|(_, p)| p.id == id)
            .map(|(u, _)| u.clone())?;
        self.pending.remove(&uuid);
        Some(uuid)
    }

    pub fn cancel_pending_uuid(&mut self, uuid: &str) -> bool {
        self.pending.remove(uuid).is_some()
    }

    pub fn unregister(&mut self, id: u32) -> Option<Engine> {
        let uuid = self.by_id.remove(&id)?;
        self.by_uuid.remove(&uuid);
        Some(Engine { id, uuid })
    }

    /// Pending registrations whose stall timer expired; they are dropped.
    pub fn expire(&mut self, now: Instant) -> Vec<(String, u32)> {
        let dead: Vec<(String, u32)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(u, p)| (u.clone(), p.id))
            .collect();
        for (u, _) in &dead {
            self.pending.remove(u);
        }
        dead
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    pub fn state(&self) -> StateFile {
        StateFile {
            engines: self
                .by_id
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            next_id: self.next_id,
        }
    }

    /// Re-creates registered engines from a state file (`--restore`), without notifications.
    pub fn restore(&mut self, state: &StateFile) -> Vec<Engine> {
        let mut out = Vec::new();
        for (k, uuid) in &state.engines {
            if let Ok(id) = k.parse::<u32>() {
                self.by_id.insert(id, uuid.clone());
                self.by_uuid.insert(uuid.clone(), id);
                out.push(Engine {
                    id,
                    uuid: uuid.clone(),
                });
            }
        }
        self.next_id = self.next_id.max(state.next_id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ids_are_monotonic_and_requested_ids_honoured() {
        let now = Instant::now();
        let later = now + Duration::from_secs(30);
        let mut r = Registry::new();
        assert_eq!(r.request("a", None, later, 10), Ok(0));
        assert_eq!(r.request("b", Some(5), later, 10), Ok(5));
        assert_eq!(
            r.request("c", Some(5), later, 10),
            Ok(6),
            "taken id -> next counter value"
        );
        assert_eq!(r.request("d", None, later, 10), Ok(7));
        assert_eq!(
            r.request("a", None, later, 10),
            Err(RegisterError::InUse("a".into()))
        );
        assert!(r.complete("a").is_some());
        assert_eq!(
            r.request("a", None, later, 10),
            Err(RegisterError::InUse("a".into()))
        );
        assert!(r.unregister(0).is_some());
        assert_eq!(
            r.request("e", Some(0), later, 10),
            Ok(0),
            "a free requested id is granted"
        );
        assert_eq!(r.request("f", None, later, 10), Ok(8));
    }

    #[test]
    fn stall_timer_and_flood_limit() {
        let now = Instant::now();
        let mut r = Registry::new();
        r.request("a", None, now, 2).unwrap();
        r.request("b", None, now + Duration::from_secs(60), 2)
            .unwrap();
        assert_eq!(r.request("c", None, now, 2), Err(RegisterError::Flooded(2)));
        assert_eq!(r.expire(now), vec![("a".to_string(), 0)]);
        assert!(r.complete("a").is_none());
        assert_eq!(r.pending_len(), 1);
    }

    #[test]
    fn state_round_trip() {
        let now = Instant::now();
        let mut r = Registry::new();
        r.request("a", None, now, 10).unwrap();
        r.complete("a");
        let s = r.state();
        let mut r2 = Registry::new();
        r2.restore(&s);
        assert_eq!(r2.id_of("a"), Some(0));
        assert_eq!(r2.request("b", None, now, 10), Ok(1));
    }
}
