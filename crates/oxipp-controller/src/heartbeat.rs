//! The heart monitor: periodic pings, pong bookkeeping and miss counting.
//!
//! Pings are opaque single frames that engines echo. Besides the periodic beat we send extra
//! "fast" pings while registrations are waiting, because a registration completes on the
//! engine's first pong and waiting a whole period (3 s by default) is what makes stock engines
//! slow to appear.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

pub struct HeartMonitor {
    period: Duration,
    max_misses: u32,
    start: Instant,
    next_beat: Instant,
    current: Vec<u8>,
    previous: Vec<u8>,
    /// Recent fast pings (also accepted as proof of life).
    fast: VecDeque<Vec<u8>>,
    next_fast: Option<Instant>,
    hearts: HashMap<String, u32>,
    responders: HashSet<String>,
    counter: u64,
}

/// What a beat decided.
#[derive(Debug, Default)]
pub struct Beat {
    /// Payload to publish now.
    pub ping: Vec<u8>,
    /// Hearts that missed too many beats.
    pub stopped: Vec<String>,
}

/// Fast pings while registrations wait: this often, a few of them remembered.
const FAST_INTERVAL: Duration = Duration::from_millis(50);
const FAST_REMEMBERED: usize = 8;

impl HeartMonitor {
    pub fn new(period: Duration, max_misses: u32, now: Instant) -> Self {
        HeartMonitor {
            period,
            max_misses,
            start: now,
            next_beat: now + period,
            current: Vec::new(),
            previous: Vec::new(),
            fast: VecDeque::new(),
            next_fast: None,
            hearts: HashMap::new(),
            responders: HashSet::new(),
            counter: 0,
        }
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    fn payload(&mut self, now: Instant) -> Vec<u8> {
        self.counter += 1;
        format!("{:.9}-{}", (now - self.start).as_secs_f64(), self.counter).into_bytes()
    }

    /// Starts tracking a heart (registration completed or restored).
    pub fn add(&mut self, uuid: &str) {
        self.hearts.insert(uuid.to_string(), 0);
    }

    pub fn remove(&mut self, uuid: &str) {
        self.hearts.remove(uuid);
        self.responders.remove(uuid);
    }

    /// An engine echoed `payload`. Returns true if it is a recent ping (proof of life).
    pub fn pong(&mut self, uuid: &str, payload: &[u8]) -> bool {
        let recent = (!self.current.is_empty() && payload == self.current.as_slice())
            || (!self.previous.is_empty() && payload == self.previous.as_slice())
            || self.fast.iter().any(|p| p.as_slice() == payload);
        if recent {
            if let Some(m) = self.hearts.get_mut(uuid) {
                *m = 0;
            }
            self.responders.insert(uuid.to_string());
        }
        recent
    }

    /// Asks for fast pings (some registration is waiting for its first pong).
    pub fn want_fast(&mut self, now: Instant) {
        if self.next_fast.is_none() {
            self.next_fast = Some(now);
        }
    }

    /// Time of the next thing to do.
    pub fn next_deadline(&self) -> Instant {
        match self.next_fast {
            Some(f) => f.min(self.next_beat),
            None => self.next_beat,
        }
    }

    /// A fast ping to publish now, if one is due. `still_wanted` = registrations still waiting.
    pub fn fast_ping(&mut self, now: Instant, still_wanted: bool) -> Option<Vec<u8>> {
        let due = self.next_fast?;
        if now < due {
            return None;
        }
        if !still_wanted {
            self.next_fast = None;
            return None;
        }
        let p = self.payload(now);
        self.fast.push_back(p.clone());
        while self.fast.len() > FAST_REMEMBERED {
            self.fast.pop_front();
        }
        self.next_fast = Some(now + FAST_INTERVAL);
        Some(p)
    }

    /// Runs the periodic beat if due.
    pub fn beat(&mut self, now: Instant) -> Option<Beat> {
        if now < self.next_beat {
            return None;
        }
        // Skip missed beats (e.g. after a long stall) instead of firing them in a burst.
        while self.next_beat <= now {
            self.next_beat += self.period;
        }
        let mut stopped = Vec::new();
        let responders = std::mem::take(&mut self.responders);
        for (uuid, misses) in self.hearts.iter_mut() {
            if !responders.contains(uuid) {
                *misses += 1;
                if *misses > self.max_misses {
                    stopped.push(uuid.clone());
                }
            }
        }
        for u in &stopped {
            self.hearts.remove(u);
        }
        let ping = self.payload(now);
        self.previous = std::mem::replace(&mut self.current, ping.clone());
        Some(Beat { ping, stopped })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_lead_to_stopped_heart() {
        let t0 = Instant::now();
        let p = Duration::from_millis(100);
        let mut hm = HeartMonitor::new(p, 2, t0);
        hm.add("a");
        hm.add("b");
        let mut t = t0;
        for i in 0..4 {
            t += p;
            let beat = hm.beat(t).unwrap();
            hm.pong("a", &beat.ping);
            if i < 2 {
                assert!(beat.stopped.is_empty(), "beat {i}");
            } else if i == 2 {
                assert_eq!(beat.stopped, vec!["b".to_string()]);
            }
        }
        assert!(!hm.pong("a", b"stale"));
    }

    #[test]
    fn late_pong_of_previous_beat_counts() {
        let t0 = Instant::now();
        let p = Duration::from_millis(100);
        let mut hm = HeartMonitor::new(p, 1, t0);
        hm.add("a");
        let b1 = hm.beat(t0 + p).unwrap();
        let _b2 = hm.beat(t0 + 2 * p).unwrap();
        assert!(hm.pong("a", &b1.ping));
    }

    #[test]
    fn fast_pings_only_while_wanted() {
        let t0 = Instant::now();
        let mut hm = HeartMonitor::new(Duration::from_secs(3), 10, t0);
        assert!(hm.fast_ping(t0, true).is_none());
        hm.want_fast(t0);
        let f = hm.fast_ping(t0, true).unwrap();
        assert!(hm.pong("x", &f));
        assert!(hm.fast_ping(t0, true).is_none(), "not due yet");
        assert!(hm.fast_ping(t0 + FAST_INTERVAL, false).is_none());
        assert!(
            hm.fast_ping(t0 + 2 * FAST_INTERVAL, true).is_none(),
            "stopped"
        );
    }
}
