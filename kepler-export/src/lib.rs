//! Prometheus exposition and HTTP(S) serving for kepler-rs.
//!
//! This crate turns an immutable [`kepler_core::Snapshot`] into the Prometheus text format
//! 0.0.4 (and, on request, OpenMetrics 1.0.0), **rendered once per snapshot**, and serves the
//! latest rendering over HTTP or HTTPS with optional basic auth, configured with the
//! Prometheus exporter-toolkit web config file.
//!
//! It does no measurement: it never reads a meter, `/proc` or `/sys`, and it must not depend
//! on `kepler-sources`, `kepler-bpf`, `kepler-k8s`, `kepler-runtime` or `kepler-bin`
//! (dependencies point one way: core <- export <- runtime <- bin). Its only inputs are a
//! tick's CPU snapshot and GPU snapshot, an [`ExportContext`] and [`SelfStats`]. It alone
//! names and renders metric families: the eBPF source's and the pod informer's counters come
//! in as plain structs ([`BpfStats`], [`KubeStats`]) that the runtime copies from those crates.
//!
//! ```text
//!  monitor loop (kepler-bin, over kepler-runtime)  scrapers
//!  Snapshot + GpuSnapshot ─► Exposition::render ─► MetricsHandle::publish
//!                                          │
//!                      serve / Server::run ◄┘  GET /metrics: latest text, gzip/OpenMetrics
//!                                               made lazily once per exposition
//! ```
//!
//! # Example
//!
//! ```
//! use kepler_export::*;
//!
//! let ctx = ExportContext { node_name: "node-1".into(), level: MetricsLevel::all(), ..Default::default() };
//! let snap = kepler_core::Attributor::default().step(&Default::default(), None, kepler_core::Timestamp(0));
//! let handle = MetricsHandle::new();
//! handle.publish(Exposition::render(&snap, None, &ctx, &SelfStats::default()));
//! let text = handle.latest().unwrap();
//! assert!(std::str::from_utf8(text.text()).unwrap().contains("kepler_build_info{node_name=\"node-1\""));
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod auth;
mod bearer;
mod error;
mod exposition;
mod fold;
mod handle;
mod jsonl;
mod level;
mod server;
mod table;
mod webconfig;

pub use bearer::{BearerAuth, BearerVerdict};
pub use error::{ErrorKind, ExportError};
pub use exposition::{
    BpfStats, BuildInfo, CarbonStats, ExportContext, Exposition, Format, KubeMode,
    KubeRequestStats, KubeStats, ModelFit, ProcessStats, SelfStats, SourceSelf,
    OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE,
};
pub use fold::{
    FoldConfig, FoldGroup, FoldedProcesses, OtherSeries, ProcessFold, DEMOTE_AFTER_TICKS,
};
pub use handle::{MetricsHandle, Refresher};
pub use jsonl::{render_json, JSON_SCHEMA};
pub use level::{parse_levels, MetricsLevel};
pub use server::{serve, Server, ServerConfig};
pub use table::render_table;
pub use webconfig::WebConfig;
