//! Order statistics for latency samples.
//!
//! Medians and tails rather than means: a single GC pause or scheduler hiccup in a Python
//! controller should not move the headline number, but it should show in p99.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Summary {
    pub samples: usize,
    pub min: f64,
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// Nearest-rank percentile of sorted data; `q` in [0, 1].
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Summarises samples (any unit; the caller names it).
pub fn summarize(samples: &[f64]) -> Summary {
    let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    Summary {
        samples: s.len(),
        min: percentile(&s, 0.0),
        median: percentile(&s, 0.5),
        p90: percentile(&s, 0.9),
        p99: percentile(&s, 0.99),
        max: percentile(&s, 1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_tails() {
        let data: Vec<f64> = (1..=101).map(f64::from).collect();
        let s = summarize(&data);
        assert_eq!(
            (s.min, s.median, s.p90, s.p99, s.max),
            (1.0, 51.0, 91.0, 100.0, 101.0)
        );
        assert_eq!(summarize(&[]).samples, 0);
    }
}
