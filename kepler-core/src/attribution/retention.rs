//! Rule 5 of DESIGN.md section 3, the end of a workload's life: a terminated workload stays
//! exported for the TTL with the energy it had, then goes; a cap bounds how many stay.

use super::config::AttributorConfig;
use crate::snapshot::State;
use crate::units::Timestamp;

/// Drops terminated items older than the TTL or below the energy threshold (`widest`: the
/// energy of the item's widest zone), then the smallest by energy beyond the cap. Returns
/// how many were dropped by the cap.
pub(super) fn retain_workloads<T>(
    items: &mut Vec<T>,
    at: Timestamp,
    config: &AttributorConfig,
    state: impl Fn(&T) -> &State,
    energy: impl Fn(&T) -> u64,
    widest: impl Fn(&T) -> u64,
) -> u64 {
    let min = config.min_terminated_energy.0;
    items.retain(|it| match state(it) {
        State::Running => true,
        State::Terminated { at: gone } => {
            at.since(*gone) < config.terminated_ttl && widest(it) >= min
        }
    });
    let Some(max) = config.max_terminated else {
        return 0;
    };
    let terminated = items
        .iter()
        .filter(|it| matches!(state(it), State::Terminated { .. }))
        .count();
    if terminated <= max {
        return 0;
    }
    // Keep the `max` largest terminated items; ties keep the earlier one.
    let mut sizes: Vec<(u64, usize)> = items
        .iter()
        .enumerate()
        .filter(|(_, it)| matches!(state(it), State::Terminated { .. }))
        .map(|(i, it)| (energy(it), i))
        .collect();
    sizes.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut drop = vec![false; items.len()];
    for &(_, i) in &sizes[max..] {
        drop[i] = true;
    }
    let mut i = 0;
    items.retain(|_| {
        i += 1;
        !drop[i - 1]
    });
    (terminated - max) as u64
}
