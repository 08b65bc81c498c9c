//! Exact integer apportionment by the largest-remainder method.
//!
//! Splitting `total` µJ in proportion to integer weights gives fractional shares; rounding each
//! would create or lose energy. Instead every share is floored, and the few microjoules left
//! over go one each to the shares with the largest remainders (ties: lowest index), so the
//! parts always sum to `total` exactly and each part is within 1 µJ of its exact share.

/// Reusable buffers for [`Apportioner::apportion`], so a tick allocates nothing in steady state.
#[derive(Debug, Default)]
pub(crate) struct Apportioner {
    remainders: Vec<(u64, u32)>,
}

impl Apportioner {
    /// Splits `total` in proportion to `weights`, writing one part per weight into `out`
    /// (cleared first). Returns the parts' sum, which equals `total` unless all weights are 0
    /// (then every part is 0 and 0 is returned).
    pub fn apportion(&mut self, total: u64, weights: &[u64], out: &mut Vec<u64>) -> u64 {
        out.clear();
        let denom: u128 = weights.iter().map(|&w| w as u128).sum();
        if denom == 0 || total == 0 {
            out.resize(weights.len(), 0);
            return 0;
        }
        self.remainders.clear();
        let mut assigned: u128 = 0;
        for (i, &w) in weights.iter().enumerate() {
            let (q, r) = share(total, w, denom);
            assigned += q as u128;
            out.push(q);
            if r != 0 {
                // Remainders are < denom; compare them as u128 scaled down only in the key.
                self.remainders.push((r, i as u32));
            }
        }
        let leftover = (total as u128 - assigned) as usize;
        if leftover > 0 {
            // Largest remainder first, then lowest index: a total order, so the result is
            // deterministic. select_nth keeps this O(n).
            let key = |a: &(u64, u32), b: &(u64, u32)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
            if leftover < self.remainders.len() {
                self.remainders.select_nth_unstable_by(leftover - 1, key);
            }
            for &(_, i) in &self.remainders[..leftover] {
                out[i as usize] += 1;
            }
        }
        total
    }
}

/// Floor of `total * w / denom` and its remainder. The remainder is returned scaled to u64
/// when `denom` exceeds u64 so that comparisons between remainders keep their order.
fn share(total: u64, w: u64, denom: u128) -> (u64, u64) {
    if let (Ok(d), Some(p)) = (u64::try_from(denom), total.checked_mul(w)) {
        return (p / d, p % d);
    }
    let p = total as u128 * w as u128;
    let q = (p / denom) as u64;
    let r = p % denom;
    // Scale the remainder into u64 preserving order: r / denom in [0, 1) as a 64-bit fraction.
    let scaled = ((r << 64) / denom).min(u64::MAX as u128) as u64;
    // Avoid mapping a non-zero remainder to zero.
    (q, scaled.max((r != 0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn thirds_sum_exactly() {
        let mut a = Apportioner::default();
        let mut out = Vec::new();
        assert_eq!(a.apportion(10, &[1, 1, 1], &mut out), 10);
        assert_eq!(out, vec![4, 3, 3]);
    }

    #[test]
    fn zero_weights_give_zero() {
        let mut a = Apportioner::default();
        let mut out = Vec::new();
        assert_eq!(a.apportion(10, &[0, 0], &mut out), 0);
        assert_eq!(out, vec![0, 0]);
    }

    #[test]
    fn largest_remainder_wins() {
        let mut a = Apportioner::default();
        let mut out = Vec::new();
        // exact: 1.5, 2.7, 5.8 -> floors 1, 2, 5 (8), two left go to .8 and .7
        a.apportion(10, &[15, 27, 58], &mut out);
        assert_eq!(out, vec![1, 3, 6]);
    }

    proptest! {
        #[test]
        fn parts_sum_to_total_and_stay_within_one(total in 0u64..u64::MAX / 2,
                                                   weights in prop::collection::vec(0u64..u64::MAX / 4, 0..40)) {
            let mut a = Apportioner::default();
            let mut out = Vec::new();
            let sum = a.apportion(total, &weights, &mut out);
            let denom: u128 = weights.iter().map(|&w| w as u128).sum();
            prop_assert_eq!(out.len(), weights.len());
            prop_assert_eq!(out.iter().map(|&x| x as u128).sum::<u128>(), sum as u128);
            if denom > 0 { prop_assert_eq!(sum, total); }
            for (i, &w) in weights.iter().enumerate() {
                let exact = total as f64 * w as f64 / denom.max(1) as f64;
                prop_assert!((out[i] as f64 - exact).abs() <= 1.0 + exact * 1e-9, "part {} = {} exact {}", i, out[i], exact);
            }
        }
    }
}
