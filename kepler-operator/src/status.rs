//! The PowerMonitor's status: `Reconciled` and `Available` conditions and the DaemonSet's
//! counters. Computed as a value; the reconciler writes it only when it differs from what is
//! stored, so the status write's own watch event finds nothing to write (no update loop).

use k8s_openapi::api::apps::v1::DaemonSet;

use crate::crd::{Condition, KeplerStatus, PowerMonitorStatus};

/// Condition type: the last reconcile applied every child.
pub const RECONCILED: &str = "Reconciled";
/// Condition type: kepler's DaemonSet serves on every node it should.
pub const AVAILABLE: &str = "Available";

/// One condition's outcome before times and generations are added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    /// CamelCase reason.
    pub reason: String,
    /// Human message.
    pub message: String,
}

impl Verdict {
    fn new(status: &'static str, reason: &str, message: String) -> Verdict {
        Verdict {
            status,
            reason: reason.into(),
            message,
        }
    }
}

/// `Available` from the DaemonSet (as the DaemonSet controller last reported it).
pub fn available(ds: Option<&DaemonSet>) -> Verdict {
    let Some(ds) = ds else {
        return Verdict::new(
            "False",
            "DaemonSetNotFound",
            "kepler's DaemonSet does not exist".into(),
        );
    };
    let generation = ds.metadata.generation.unwrap_or(0);
    let st = ds.status.clone().unwrap_or_default();
    if st.observed_generation.unwrap_or(0) < generation {
        return Verdict::new(
            "Unknown",
            "DaemonSetOutOfSync",
            format!(
                "the DaemonSet controller has not observed generation {generation} yet (seen: {})",
                st.observed_generation.unwrap_or(0)
            ),
        );
    }
    let desired = st.desired_number_scheduled;
    let available = st.number_available.unwrap_or(0);
    let updated = st.updated_number_scheduled.unwrap_or(0);
    if desired == 0 || available == 0 {
        return Verdict::new(
            "False",
            "DaemonSetPodsNotRunning",
            format!("{available} of {desired} kepler pods available"),
        );
    }
    if updated < desired {
        return Verdict::new(
            "Unknown",
            "DaemonSetRolloutInProgress",
            format!("{updated} of {desired} kepler pods updated"),
        );
    }
    if available < desired {
        return Verdict::new(
            "False",
            "DaemonSetPartiallyAvailable",
            format!("{available} of {desired} kepler pods available"),
        );
    }
    Verdict::new(
        "True",
        "DaemonSetReady",
        format!("{available} of {desired} kepler pods available"),
    )
}

/// The DaemonSet's counters.
pub fn counters(ds: Option<&DaemonSet>) -> Option<KeplerStatus> {
    let st = ds?.status.clone()?;
    Some(KeplerStatus {
        current_number_scheduled: st.current_number_scheduled,
        number_misscheduled: st.number_misscheduled,
        desired_number_scheduled: st.desired_number_scheduled,
        number_ready: st.number_ready,
        updated_number_scheduled: st.updated_number_scheduled.unwrap_or(0),
        number_available: st.number_available.unwrap_or(0),
        number_unavailable: st.number_unavailable.unwrap_or(0),
    })
}

/// The new status: `old`'s transition times are kept for conditions whose status did not change.
pub fn next(
    old: Option<&PowerMonitorStatus>,
    generation: i64,
    verdicts: &[(&str, Verdict)],
    kepler: Option<KeplerStatus>,
    now: &str,
) -> PowerMonitorStatus {
    let conditions = verdicts
        .iter()
        .map(|(type_, v)| {
            let prev = old.and_then(|o| o.conditions.iter().find(|c| c.type_ == *type_));
            let last_transition_time = match prev {
                Some(p) if p.status == v.status => p.last_transition_time.clone(),
                _ => now.to_string(),
            };
            Condition {
                type_: type_.to_string(),
                status: v.status.into(),
                observed_generation: generation,
                last_transition_time,
                reason: v.reason.clone(),
                message: v.message.clone(),
            }
        })
        .collect();
    PowerMonitorStatus { conditions, kepler }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSetStatus;

    fn ds(generation: i64, observed: i64, desired: i32, available: i32, updated: i32) -> DaemonSet {
        let mut d = DaemonSet::default();
        d.metadata.generation = Some(generation);
        d.status = Some(DaemonSetStatus {
            observed_generation: Some(observed),
            desired_number_scheduled: desired,
            number_available: Some(available),
            updated_number_scheduled: Some(updated),
            ..DaemonSetStatus::default()
        });
        d
    }

    #[test]
    fn available_reasons() {
        assert_eq!(available(None).reason, "DaemonSetNotFound");
        assert_eq!(
            available(Some(&ds(2, 1, 1, 1, 1))).reason,
            "DaemonSetOutOfSync"
        );
        assert_eq!(
            available(Some(&ds(1, 1, 1, 0, 1))).reason,
            "DaemonSetPodsNotRunning"
        );
        assert_eq!(
            available(Some(&ds(1, 1, 3, 3, 2))).reason,
            "DaemonSetRolloutInProgress"
        );
        assert_eq!(
            available(Some(&ds(1, 1, 3, 2, 3))).reason,
            "DaemonSetPartiallyAvailable"
        );
        let ready = available(Some(&ds(1, 1, 3, 3, 3)));
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            ("True", "DaemonSetReady")
        );
    }

    #[test]
    fn unchanged_status_keeps_its_transition_time() {
        let v = Verdict::new("True", "ReconcileSuccess", String::new());
        let first = next(None, 1, &[(RECONCILED, v.clone())], None, "t1");
        let again = next(Some(&first), 1, &[(RECONCILED, v)], None, "t2");
        assert_eq!(first, again);
        let failed = Verdict::new("False", "SecretNotFound", String::new());
        let changed = next(Some(&first), 1, &[(RECONCILED, failed)], None, "t3");
        assert_eq!(changed.conditions[0].last_transition_time, "t3");
    }
}
