//! Kubernetes pod metadata for kepler-rs: container id -> pod UID, name, namespace and
//! container name, for the pods of this node only.
//!
//! Two informer modes fill one [`PodCache`] in the background:
//!
//! - `kubelet` (default): polls the node's kubelet `GET /pods` every `pollInterval` with the
//!   service-account token. The API server sees no load at all.
//! - `apiserver`: one kube-rs watcher with `fieldSelector=spec.nodeName=<node>`: one list and
//!   one resumable watch per node; a 410 Gone relists.
//!
//! The monitor loop never waits on the network: [`PodActivity`] wraps the activity source and,
//! after each read, resolves every container id from the cache under one lock. Ids in no pod
//! (sandboxes, system containers) go to a negative cache with an expiry; a miss never sends a
//! request, so the request rate is fixed by the mode, not by the workload.
//!
//! ```text
//!  kubelet /pods (poll) ──┐
//!                         ├─► PodCache ◄── PodActivity::read (per tick, one lock) ◄── procfs
//!  API-server watch ──────┘   (+ negative cache)
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod apiserver;
mod cache;
mod enrich;
mod informer;
mod kubelet;
mod meta;
mod stats;
mod timing;
mod token_review;

pub use apiserver::watch_config;
pub use cache::{CacheConfig, CacheView, Lookup, PodCache};
pub use enrich::PodActivity;
pub use informer::{load_client_config, InformerConfig, InformerMode, PodInformer, StartError};
pub use kubelet::{parse_pods, poll_once, PollError};
pub use meta::{
    bare_container_id, ContainerMeta, ContainerStatusLite, PodMeta, PodObject, PodObjectList,
    PodRecord,
};
pub use stats::{InformerStats, RequestKind, RequestStats};
pub use token_review::{BadServiceAccountName, TokenReviewer, TokenVerdict};
