//! The heart monitor: periodic pings, pong bookkeeping and miss counting.
//!
//! Pings are opaque single frames that engines echo. Besides the periodic beat we send extra
//! "fast" pings while registrations are waiting, because a registration completes on the
//! engine's first pong and waiting a whole period (3 s by default) is what makes stock engines
//! slow to appear.
//!
//! A third kind, the probe, makes dead engines known within a second instead of after
//! `max_misses` periods: when a heart's TCP connection to the pong socket drops (the shell sees
//! the pong socket's `Disconnected` event: a killed process's kernel closes its sockets at
//! once), we ask everyone rather than trusting the routing id of the dropped connection (it may
//! have been replaced by a reconnect already): fast pings for `PROBE_WINDOW`, and any registered
//! heart that answers none of them is stopped. A live engine answers within milliseconds (its
//! heart never waits on Python), and one that merely reconnected answers after its 100 ms
//! reconnect interval.

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
    probe: Option<Probe>,
}

/// A probe in progress: the pings sent since it began, who answered one of them, and whom it
/// judges: the hearts registered when it began. A heart that registers during the probe (its
/// first pong may answer a ping from before the probe, and its pong socket may connect after
/// the probe's last ping) is not judged by it; seen once: a new engine unregistered 23 ms
/// after it registered, by a probe that another engine's exit had started.
struct Probe {
    ends: Instant,
    pings: Vec<Vec<u8>>,
    answered: HashSet<String>,
    judged: HashSet<String>,
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
/// ...but every registered heart answers every ping, so with many engines they are spaced out
/// to at most one pong per this much time per heart (5,000 engines: every 200 ms), up to
/// [`FAST_INTERVAL_MAX`]. Fixed 50 ms pings made a flood of 5,000 registrations cost the
/// controller and the engines ~100,000 pongs a second, and each pong is a loopback TCP
/// message: registering them took 9 s instead of 3.
const FAST_INTERVAL_PER_HEART: Duration = Duration::from_micros(40);
/// A probe still pings ~3 times in its window at this spacing.
const FAST_INTERVAL_MAX: Duration = Duration::from_millis(200);
const FAST_REMEMBERED: usize = 8;
/// How long a probe waits for answers: long enough for a reconnect and a loaded machine's
/// scheduling delays, short enough that a dead engine is known within a second.
pub const PROBE_WINDOW: Duration = Duration::from_millis(600);

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
            probe: None,
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
            if let Some(probe) = self.probe.as_mut() {
                if probe.pings.iter().any(|p| p.as_slice() == payload) {
                    probe.answered.insert(uuid.to_string());
                }
            }
        }
        recent
    }

    /// Some heart connection dropped: (re)start a probe. A probe already running starts over,
    /// so an engine that died during it is judged on pings sent after its death.
    pub fn probe(&mut self, now: Instant) {
        self.probe = Some(Probe {
            ends: now + PROBE_WINDOW,
            pings: Vec::new(),
            answered: HashSet::new(),
            judged: self.hearts.keys().cloned().collect(),
        });
        self.next_fast = Some(now);
    }

    /// When a finished probe is due: the registered hearts that answered none of its pings.
    /// They are forgotten here, like hearts stopped by missed beats.
    pub fn probe_result(&mut self, now: Instant) -> Option<Vec<String>> {
        match &self.probe {
            Some(p) if now >= p.ends => {}
            _ => return None,
        }
        let probe = self.probe.take()?;
        if probe.pings.is_empty() {
            return Some(Vec::new());
        }
        let stopped: Vec<String> = self
            .hearts
            .keys()
            .filter(|u| probe.judged.contains(*u) && !probe.answered.contains(*u))
            .cloned()
            .collect();
        for u in &stopped {
            self.hearts.remove(u);
            self.responders.remove(u);
        }
        Some(stopped)
    }

    /// Asks for fast pings (some registration is waiting for its first pong).
    pub fn want_fast(&mut self, now: Instant) {
        if self.next_fast.is_none() {
            self.next_fast = Some(now);
        }
    }

    /// Time of the next thing to do.
    pub fn next_deadline(&self) -> Instant {
        let mut d = self.next_beat;
        if let Some(f) = self.next_fast {
            d = d.min(f);
        }
        if let Some(p) = &self.probe {
            d = d.min(p.ends);
        }
        d
    }

    /// A fast ping to publish now, if one is due. `still_wanted` = registrations still waiting
    /// (a running probe wants them too).
    pub fn fast_ping(&mut self, now: Instant, still_wanted: bool) -> Option<Vec<u8>> {
        let due = self.next_fast?;
        if now < due {
            return None;
        }
        let probing = self.probe.as_ref().is_some_and(|p| now < p.ends);
        if !still_wanted && !probing {
            self.next_fast = None;
            return None;
        }
        let p = self.payload(now);
        if probing {
            if let Some(probe) = self.probe.as_mut() {
                probe.pings.push(p.clone());
            }
        }
        self.fast.push_back(p.clone());
        while self.fast.len() > FAST_REMEMBERED {
            self.fast.pop_front();
        }
        self.next_fast = Some(now + self.fast_interval());
        Some(p)
    }

    /// Time between fast pings for the hearts registered now.
    fn fast_interval(&self) -> Duration {
        let per_heart = FAST_INTERVAL_PER_HEART * self.hearts.len().min(1 << 20) as u32;
        per_heart.clamp(FAST_INTERVAL, FAST_INTERVAL_MAX)
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
    fn probe_stops_exactly_the_hearts_that_answer_none_of_its_pings() {
        let t0 = Instant::now();
        let mut hm = HeartMonitor::new(Duration::from_secs(3), 10, t0);
        for u in ["alive", "late", "dead"] {
            hm.add(u);
        }
        // a pong to a ping from before the probe proves nothing about after the drop
        let old = hm.beat(t0 + Duration::from_secs(3)).unwrap().ping;
        let t1 = t0 + Duration::from_secs(3);
        hm.probe(t1);
        assert!(hm.next_deadline() <= t1);
        let p1 = hm.fast_ping(t1, false).expect("a probe pings at once");
        assert!(hm.pong("dead", &old));
        assert!(hm.pong("alive", &p1));
        assert!(
            hm.probe_result(t1 + FAST_INTERVAL).is_none(),
            "window still open"
        );
        let t2 = t1 + 2 * FAST_INTERVAL;
        let p2 = hm
            .fast_ping(t2, false)
            .expect("pings go on during the window");
        assert!(
            hm.pong("late", &p2),
            "a reconnecting heart answers a later probe ping"
        );
        let stopped = hm.probe_result(t1 + PROBE_WINDOW).expect("window over");
        assert_eq!(stopped, vec!["dead".to_string()]);
        assert!(
            hm.probe_result(t1 + PROBE_WINDOW).is_none(),
            "reported once"
        );
        assert!(
            hm.fast_ping(t1 + PROBE_WINDOW, false).is_none(),
            "fast pings end with it"
        );
        // the stopped heart is forgotten: no second report from missed beats
        let beat = hm.beat(t0 + Duration::from_secs(60)).unwrap();
        assert!(!beat.stopped.contains(&"dead".to_string()));
    }

    #[test]
    fn a_new_drop_restarts_the_probe() {
        let t0 = Instant::now();
        let mut hm = HeartMonitor::new(Duration::from_secs(3), 10, t0);
        hm.add("a");
        hm.probe(t0);
        let p1 = hm.fast_ping(t0, false).unwrap();
        assert!(hm.pong("a", &p1));
        let t1 = t0 + Duration::from_millis(300);
        hm.probe(t1);
        assert!(hm.probe_result(t0 + PROBE_WINDOW).is_none(), "restarted");
        // "a" died at t1: it answered only the first probe's ping
        hm.fast_ping(t1, false).unwrap();
        assert_eq!(
            hm.probe_result(t1 + PROBE_WINDOW).unwrap(),
            vec!["a".to_string()]
        );
    }

    #[test]
    fn a_heart_registered_during_a_probe_is_not_judged_by_it() {
        let t0 = Instant::now();
        let mut hm = HeartMonitor::new(Duration::from_secs(3), 10, t0);
        hm.add("old");
        hm.probe(t0);
        let p1 = hm.fast_ping(t0, false).unwrap();
        assert!(hm.pong("old", &p1));
        // registered after the probe's pings went out; it answered none of them
        hm.add("new");
        assert_eq!(
            hm.probe_result(t0 + PROBE_WINDOW).unwrap(),
            Vec::<String>::new()
        );
        // the next probe judges it like any other heart
        let t1 = t0 + Duration::from_secs(1);
        hm.probe(t1);
        let p2 = hm.fast_ping(t1, false).unwrap();
        assert!(hm.pong("old", &p2));
        assert_eq!(
            hm.probe_result(t1 + PROBE_WINDOW).unwrap(),
            vec!["new".to_string()]
        );
    }

    #[test]
    fn fast_pings_are_spaced_out_when_many_hearts_answer_each() {
        let t0 = Instant::now();
        let mut hm = HeartMonitor::new(Duration::from_secs(3), 10, t0);
        hm.want_fast(t0);
        hm.fast_ping(t0, true).unwrap();
        assert!(
            hm.fast_ping(t0 + FAST_INTERVAL, true).is_some(),
            "few hearts: 50 ms"
        );
        for i in 0..5000 {
            hm.add(&format!("e{i}"));
        }
        let t1 = t0 + FAST_INTERVAL;
        let t2 = t1 + FAST_INTERVAL;
        assert!(hm.fast_ping(t2, true).is_some());
        assert!(
            hm.fast_ping(t2 + FAST_INTERVAL * 3, true).is_none(),
            "5,000 hearts: not every 50 ms"
        );
        assert!(hm.fast_ping(t2 + FAST_INTERVAL_MAX, true).is_some());
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
