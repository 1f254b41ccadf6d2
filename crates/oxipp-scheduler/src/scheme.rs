//! Engine-choice schemes (`TaskScheduler.scheme_name`), as in stock
//! `ipyparallel/controller/task_scheduler.py`.
//!
//! Every scheme picks an index into the *candidate* engines listed in LRU order (least
//! recently assigned first; see the `engines` module) with their loads (outstanding tasks).
//! [`Scheme::choose_index`] is the literal stock algorithm over such a list; the engine table
//! has equivalent shortcuts for the common unconstrained case.

use std::fmt;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::Rng;

/// How the load-balanced scheduler picks an engine. `pure` (the ZMQ-native queue) is not a
/// scheme of this scheduler: the shell handles it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Scheme {
    /// Lowest load; ties go to the least recently used engine. Stock default.
    #[default]
    LeastLoad,
    /// Least recently used engine, ignoring loads.
    Lru,
    /// Uniformly random engine.
    PlainRandom,
    /// Two uniform picks, keep the less recently used one.
    TwoBin,
    /// Two picks weighted by `1 / (1e-6 + load)`, keep the less loaded (first pick on ties).
    Weighted,
}

impl Scheme {
    /// Parse a stock scheme name (`leastload`, `lru`, `plainrandom`, `twobin`, `weighted`).
    /// `pure` and unknown names give `None`.
    pub fn parse(name: &str) -> Option<Scheme> {
        Some(match name {
            "leastload" => Scheme::LeastLoad,
            "lru" => Scheme::Lru,
            "plainrandom" => Scheme::PlainRandom,
            "twobin" => Scheme::TwoBin,
            "weighted" => Scheme::Weighted,
            _ => return None,
        })
    }

    /// The stock name.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::LeastLoad => "leastload",
            Scheme::Lru => "lru",
            Scheme::PlainRandom => "plainrandom",
            Scheme::TwoBin => "twobin",
            Scheme::Weighted => "weighted",
        }
    }

    /// Stock chooser over `loads` (candidates in LRU order). `loads` must be non-empty.
    pub fn choose_index(self, loads: &[u32], rng: &mut StdRng) -> usize {
        debug_assert!(!loads.is_empty());
        let n = loads.len();
        match self {
            Scheme::LeastLoad => {
                // loads.index(min(loads)): first occurrence of the minimum
                let mut best = 0;
                for (i, &l) in loads.iter().enumerate() {
                    if l < loads[best] {
                        best = i;
                    }
                }
                best
            }
            Scheme::Lru => 0,
            Scheme::PlainRandom => rng.gen_range(0..n),
            Scheme::TwoBin => {
                let a = rng.gen_range(0..n);
                let b = rng.gen_range(0..n);
                a.min(b)
            }
            Scheme::Weighted => weighted(loads.iter().copied(), n, rng),
        }
    }
}

/// Stock `weighted`: cumulative inverse-load weights, two uniform draws over the total,
/// `while sums[i] < x: i += 1`, keep the draw with the larger weight (first draw on ties).
pub(crate) fn weighted(loads: impl Iterator<Item = u32>, n: usize, rng: &mut StdRng) -> usize {
    let mut weights = Vec::with_capacity(n);
    let mut sums = Vec::with_capacity(n);
    let mut total = 0.0f64;
    for l in loads {
        let w = 1.0 / (1e-6 + f64::from(l));
        total += w;
        weights.push(w);
        sums.push(total);
    }
    let x = rng.gen::<f64>() * total;
    let y = rng.gen::<f64>() * total;
    let last = sums.len() - 1;
    let idx = sums.partition_point(|&s| s < x).min(last);
    let idy = sums.partition_point(|&s| s < y).min(last);
    if weights[idy] > weights[idx] {
        idy
    } else {
        idx
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scheme {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scheme::parse(s).ok_or_else(|| {
            format!(
                "unknown task scheme {s:?} (expected leastload, lru, plainrandom, twobin or weighted; \
                 'pure' is not handled by this scheduler)"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn names_round_trip() {
        for s in [
            Scheme::LeastLoad,
            Scheme::Lru,
            Scheme::PlainRandom,
            Scheme::TwoBin,
            Scheme::Weighted,
        ] {
            assert_eq!(Scheme::parse(s.name()), Some(s));
            assert_eq!(s.to_string().parse::<Scheme>(), Ok(s));
        }
        assert_eq!(Scheme::parse("pure"), None);
        assert!("bogus".parse::<Scheme>().is_err());
        assert_eq!(Scheme::default(), Scheme::LeastLoad);
    }

    #[test]
    fn deterministic_choosers() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(Scheme::LeastLoad.choose_index(&[3, 1, 2, 1], &mut rng), 1);
        assert_eq!(Scheme::LeastLoad.choose_index(&[0], &mut rng), 0);
        assert_eq!(Scheme::Lru.choose_index(&[5, 0, 0], &mut rng), 0);
    }

    #[test]
    fn random_choosers_distribution() {
        let mut rng = StdRng::seed_from_u64(7);
        let n = 4;
        let trials = 40_000;
        let mut plain = vec![0u32; n];
        let mut two = vec![0u32; n];
        for _ in 0..trials {
            plain[Scheme::PlainRandom.choose_index(&[0; 4], &mut rng)] += 1;
            two[Scheme::TwoBin.choose_index(&[0; 4], &mut rng)] += 1;
        }
        for c in &plain {
            assert!((9_000..11_000).contains(c), "{plain:?}");
        }
        // min of two uniform picks: P(i) = ((n-i)^2 - (n-i-1)^2) / n^2 = 7/16, 5/16, 3/16, 1/16
        let expect = [7.0, 5.0, 3.0, 1.0].map(|x| x / 16.0 * trials as f64);
        for (c, e) in two.iter().zip(expect) {
            assert!((f64::from(*c) - e).abs() < e * 0.1 + 100.0, "{two:?}");
        }
    }

    #[test]
    fn weighted_prefers_idle() {
        let mut rng = StdRng::seed_from_u64(3);
        // an idle engine weighs 1e6, a load-1 engine ~1: the idle one wins essentially always
        let mut hits = 0;
        for _ in 0..1000 {
            if Scheme::Weighted.choose_index(&[1, 1, 0, 1], &mut rng) == 2 {
                hits += 1;
            }
        }
        assert!(hits >= 999, "{hits}");
        // equal loads: uniform
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            counts[Scheme::Weighted.choose_index(&[2, 2, 2], &mut rng)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        // less loaded of the two draws: loads 1 and 3 → weights ~1 and ~1/3;
        // P(pick 0) = 1 - P(both draws hit 1) = 1 - (1/4)^2 = 15/16
        let mut zero = 0;
        for _ in 0..16_000 {
            if Scheme::Weighted.choose_index(&[1, 3], &mut rng) == 0 {
                zero += 1;
            }
        }
        assert!((14_600..15_400).contains(&zero), "{zero}");
    }
}
