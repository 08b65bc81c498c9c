//! Stage 4, distribution: each bucket's active energy (and, under an idle policy, its idle
//! energy) is apportioned by the weights, exactly, with the largest-remainder method (rule 4
//! of DESIGN.md section 3: `active = Σ workloads + unattributed` in integer microjoules).
//! Busy time no target explains weighs for `unattributed`; so does everything when there is
//! no activity frame.

use super::processes::ProcState;
use super::usage::Bucket;
use super::weigher::{Target, Weights};
use crate::apportion::Apportioner;
use crate::snapshot::{Energies, IdlePolicy};
use crate::zone::ZoneKind;

/// Apportions energy by weights; owns the per-bucket scratch.
#[derive(Debug, Default)]
pub(super) struct Distributor {
    apportioner: Apportioner,
    /// The weights as one bucket sees them, then unattributed's weight.
    bucket_weights: Vec<u64>,
    /// Under [`IdlePolicy::Equal`]: 1 per live process, then unattributed's weight.
    idle_weights: Vec<u64>,
    parts: Vec<u64>,
    /// This tick's energy of each [`Target::Exited`], in order.
    pub(super) exited_tick: Vec<Energies>,
    /// See [`crate::Snapshot::unattributed`].
    pub(super) unattributed: Energies,
}

impl Distributor {
    /// Distributes every bucket's energy of this tick among `w`'s targets.
    pub(super) fn distribute(
        &mut self,
        buckets: &[Bucket],
        w: &Weights,
        procs: &mut [ProcState],
        frame_seen: bool,
        policy: IdlePolicy,
    ) {
        self.unattributed.new_tick();
        self.exited_tick.clear();
        self.exited_tick.resize(w.exited, Energies::default());
        let sum: u64 = w.weights.iter().sum();
        let socket_busy: u64 = buckets[1..].iter().map(|b| b.busy).sum();
        if policy == IdlePolicy::Equal {
            self.idle_weights.clear();
            self.idle_weights.extend(w.targets.iter().map(|t| match t {
                Target::Proc(_) => 1,
                Target::Exited(_) => 0,
            }));
            // Nobody alive: idle goes to unattributed.
            self.idle_weights.push(u64::from(w.targets.is_empty()));
        }
        for b in buckets {
            let denom = self.bucket_weights(b, w, sum, socket_busy, frame_seen);
            for kind in ZoneKind::ALL {
                self.share_kind(b, kind.index(), denom, policy, &w.targets, procs);
            }
        }
    }

    /// Fills `bucket_weights` for bucket `b`: the node's weights as they are, a socket's
    /// weights for the targets that ran on it. The last weight is the busy time nobody
    /// explains (unattributed's). Returns the weights' sum, 0 without an activity frame.
    fn bucket_weights(
        &mut self,
        b: &Bucket,
        w: &Weights,
        sum: u64,
        socket_busy: u64,
        frame_seen: bool,
    ) -> u64 {
        self.bucket_weights.clear();
        match b.socket {
            None => self.bucket_weights.extend_from_slice(&w.weights),
            Some(s) => {
                for (w, sock) in w.weights.iter().zip(&w.sockets_of) {
                    self.bucket_weights.push(match sock {
                        Some(x) if *x == s => *w,
                        Some(_) => 0,
                        // Unknown socket: spread like the node's busy time.
                        None if socket_busy > 0 => {
                            (*w as u128 * b.busy as u128 / socket_busy as u128) as u64
                        }
                        None => 0,
                    });
                }
            }
        }
        let bsum: u64 = if b.socket.is_none() {
            sum
        } else {
            self.bucket_weights.iter().sum()
        };
        let denom = if frame_seen { b.busy.max(bsum) } else { 0 };
        self.bucket_weights.push(denom - bsum);
        denom
    }

    /// Apportions bucket `b`'s energy of kind index `k`: active by the bucket's weights,
    /// idle by the policy's. With no weight at all, everything is unattributed.
    fn share_kind(
        &mut self,
        b: &Bucket,
        k: usize,
        denom: u64,
        policy: IdlePolicy,
        targets: &[Target],
        procs: &mut [ProcState],
    ) {
        let n = targets.len();
        let active = b.active.0[k];
        if active > 0 {
            self.apportioner
                .apportion(active, &self.bucket_weights, &mut self.parts);
            if denom == 0 {
                unattributed_only(&mut self.parts, n, active);
            }
            let (exited, unattributed) = (&mut self.exited_tick, &mut self.unattributed);
            credit_parts(targets, &self.parts, procs, exited, unattributed, k);
        }
        let idle = b.idle.0[k];
        if idle > 0 && policy != IdlePolicy::None {
            let weights = match policy {
                IdlePolicy::Equal => &self.idle_weights,
                _ => &self.bucket_weights,
            };
            self.apportioner.apportion(idle, weights, &mut self.parts);
            if weights.iter().all(|&w| w == 0) {
                unattributed_only(&mut self.parts, n, idle);
            }
            let (exited, unattributed) = (&mut self.exited_tick, &mut self.unattributed);
            credit_parts(targets, &self.parts, procs, exited, unattributed, k);
        }
    }
}

/// Parts that give all of `energy` to unattributed (after `n` targets).
fn unattributed_only(parts: &mut Vec<u64>, n: usize, energy: u64) {
    parts.clear();
    parts.resize(n, 0);
    parts.push(energy);
}

/// Adds apportioned parts (one per target, then unattributed) of kind `k`.
fn credit_parts(
    targets: &[Target],
    parts: &[u64],
    procs: &mut [ProcState],
    exited: &mut [Energies],
    unattributed: &mut Energies,
    k: usize,
) {
    let mut exited_i = 0;
    for (t, &part) in targets.iter().zip(parts) {
        match t {
            Target::Proc(slot) => procs[*slot].entry.energy.credit(k, part),
            Target::Exited(_) => {
                exited[exited_i].credit(k, part);
                exited_i += 1;
            }
        }
    }
    if let Some(&rest) = parts.get(targets.len()) {
        unattributed.credit(k, rest);
    }
}
