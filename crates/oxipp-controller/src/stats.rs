//! Counters of what the controller refused or dropped, so bad input is visible in logs and
//! in tests rather than silently swallowed.

use std::collections::BTreeMap;

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub counts: BTreeMap<&'static str, u64>,
}

impl Stats {
    pub fn bump(&mut self, what: &'static str) -> u64 {
        let c = self.counts.entry(what).or_insert(0);
        *c += 1;
        *c
    }

    pub fn get(&self, what: &str) -> u64 {
        self.counts.get(what).copied().unwrap_or(0)
    }
}
