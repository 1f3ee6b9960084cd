//! What a campaign earned against its holdout, as numbers: the conversion rates of the recipients
//! and of the held-out friends, the lift (their difference) with its 95 % interval, and the return
//! on what the campaign cost. Pure arithmetic on counts and sums.
//!
//! The interval is Newcombe's hybrid score interval for a difference of two independent
//! proportions (his method 10, 1998): a Wilson score interval (no continuity correction) for each
//! rate, combined. It stays inside [-1, 1] and behaves at 0 and at n conversions, where the Wald
//! interval collapses. statsmodels' `confint_proportions_2indep(method="newcomb")` computes the
//! same.

use serde::Serialize;

/// z for a two-sided 95 % interval.
pub const Z95: f64 = 1.95996;

/// The Wilson score interval of `x` successes in `n` trials (no continuity correction); None for
/// `n` = 0.
pub fn wilson(x: u64, n: u64, z: f64) -> Option<(f64, f64)> {
    if n == 0 || x > n {
        return None;
    }
    let (n, p) = (n as f64, x as f64 / n as f64);
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = z / denominator * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// The lift of a treated group over a control group: the difference of their conversion rates.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lift {
    /// Null when a group is empty (`reason` says which).
    pub estimate: Option<f64>,
    /// [low, high], 95 %, Newcombe's hybrid score method.
    pub ci95: Option<[f64; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The lift of `x1` conversions in `n1` treated friends over `x2` in `n2` held-out ones.
pub fn lift(x1: u64, n1: u64, x2: u64, n2: u64) -> Lift {
    let none = |reason: &str| Lift { estimate: None, ci95: None, reason: Some(reason.into()) };
    if n1 == 0 {
        return none("no recipients");
    }
    if n2 == 0 {
        return none("no holdout: the campaign held no friend out");
    }
    let (Some((l1, u1)), Some((l2, u2))) = (wilson(x1, n1, Z95), wilson(x2, n2, Z95)) else {
        return none("more conversions than friends");
    };
    let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
    let d = p1 - p2;
    let low = d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt();
    let high = d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt();
    Lift { estimate: Some(d), ci95: Some([low.max(-1.0), high.min(1.0)]), reason: None }
}

impl Lift {
    /// "insufficient sample" while the interval spans zero (or there is none); otherwise whether
    /// the campaign lifted conversions or lowered them.
    pub fn verdict(&self) -> &'static str {
        match self.ci95 {
            Some([low, _]) if low > 0.0 => "lift",
            Some([_, high]) if high < 0.0 => "fewer conversions than the holdout",
            _ => "insufficient sample",
        }
    }
}

/// Revenue over cost; None when the campaign cost nothing.
pub fn roas(revenue: f64, cost: f64) -> Option<f64> {
    (cost > 0.0).then(|| revenue / cost)
}

/// Incremental ROAS: (the recipients' revenue per friend - the holdout's revenue per friend) x
/// recipients / cost: what the campaign added, per unit spent. None without a holdout or a cost.
pub fn incremental_roas(revenue: f64, recipients: u64, holdout_revenue: f64, holdout: u64, cost: f64) -> Option<f64> {
    if recipients == 0 || holdout == 0 || cost <= 0.0 {
        return None;
    }
    let per_friend = revenue / recipients as f64 - holdout_revenue / holdout as f64;
    Some(per_friend * recipients as f64 / cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-5
    }

    #[test]
    fn the_hybrid_score_interval_matches_the_worked_example() {
        // 35 of 150 against 21 of 150: 0.0933, [0.0049, 0.1806].
        let l = lift(35, 150, 21, 150);
        let [low, high] = l.ci95.unwrap();
        assert!(close(l.estimate.unwrap(), 0.0933) && close(low, 0.0049) && close(high, 0.1806), "{l:?}");
        assert_eq!(l.verdict(), "lift");
    }

    #[test]
    fn intervals_equal_statsmodels_newcomb() {
        // statsmodels 0.15.0, confint_proportions_2indep(x1, n1, x2, n2, method="newcomb",
        // compare="diff"); it takes z = 1.959963984..., the 1.95996: agreement to 1e-5.
        let cases = [
            ((35, 150, 21, 150), (0.004856945026012388, 0.1806210537064124)),
            ((5, 5, 0, 7), (0.4393529903596999, 1.0)),
            ((0, 10, 0, 10), (-0.27753279986288926, 0.27753279986288926)),
            ((10, 200, 3, 20), (-0.3116309130510229, 0.005348429451854778)),
            ((120, 1800, 9, 200), (-0.018076700615293838, 0.04621743893816185)),
            ((1, 40, 0, 5), (-0.4099692718642109, 0.12881368963474096)),
        ];
        for ((x1, n1, x2, n2), (low, high)) in cases {
            let [l, h] = lift(x1, n1, x2, n2).ci95.unwrap();
            assert!((l - low).abs() < 1e-5 && (h - high).abs() < 1e-5, "{x1}/{n1} vs {x2}/{n2}: [{l}, {h}]");
        }
    }

    #[test]
    fn extreme_and_empty_groups_stay_inside_bounds_or_say_why() {
        let all = lift(5, 5, 0, 7);
        assert!(all.ci95.unwrap()[1] <= 1.0 && all.ci95.unwrap()[0] > 0.0, "{all:?}");
        let none = lift(0, 10, 0, 10);
        assert_eq!(none.estimate, Some(0.0));
        assert_eq!(none.verdict(), "insufficient sample");
        let no_holdout = lift(3, 10, 0, 0);
        assert_eq!((no_holdout.estimate, no_holdout.ci95), (None, None));
        assert!(no_holdout.reason.unwrap().contains("no holdout"));
        assert_eq!(lift(0, 0, 1, 3).reason.as_deref(), Some("no recipients"));
        assert_eq!(lift(4, 3, 1, 3).estimate, None, "more conversions than friends");
        assert_eq!(lift(10, 200, 3, 20).verdict(), "insufficient sample", "the interval spans zero");
    }

    #[test]
    fn roas_and_incremental_roas_follow_their_definitions() {
        // 200 cart abandoners, 10 buy at NT$800, the holdout of 20 has 1 buyer; NT$40 spent.
        assert_eq!(roas(8_000.0, 40.0), Some(200.0));
        // (8,000 / 200 - 800 / 20) x 200 / 40 = 0.
        assert_eq!(incremental_roas(8_000.0, 200, 800.0, 20, 40.0), Some(0.0));
        // (8,000 / 200 - 0) x 200 / 40 = 200.
        assert_eq!(incremental_roas(8_000.0, 200, 0.0, 20, 40.0), Some(200.0));
        assert_eq!(incremental_roas(8_000.0, 200, 0.0, 0, 40.0), None);
        assert_eq!(roas(1.0, 0.0), None);
    }
}
