//! Platform power from BMCs over Redfish (EP-001).
//!
//! ```text
//!  redfish thread (tokio, one task per BMC)            monitor loop
//!  walk ─► BmcShared { last good readings, when } ◄── Redfish::read (copies an Arc)
//!   ▲ client: reqwest + rustls, sessions or basic auth,
//!   │ httpTimeout per request, body cap, backoff on failure
//! ```
//!
//! Unlike Go Kepler, no BMC request ever happens inside a scrape or a monitor tick: a BMC that
//! hangs costs its own task only. Every request has a timeout (default 5 s, also when the
//! config omits it); PSU *input* watts are read, never output; one failing chassis or resource
//! is skipped while the rest are exported.

mod client;
mod config;
mod error;
mod model;
mod poller;
mod source;
mod walk;

pub use client::{Client, Fetch, SESSIONS_PATH};
pub use config::{
    load_node_bmcs, normalize_endpoint, parse_node_bmcs, BmcConfig, NodeBmcs, RedfishOptions,
    Secret,
};
pub use error::{FetchError, FetchErrorKind};
pub use model::{
    best_sensor, node_watts, parse_resource, readings_in, sensor_rank, PowerReading, ReadingKind,
    SensorRank,
};
pub use poller::{backoff, jitter};
pub use source::Redfish;
pub use walk::{walk, Walk, SERVICE_ROOT};
