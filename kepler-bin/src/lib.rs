//! The `kepler` binary's library half: configuration, wiring and the monitor loop.
//!
//! It is thin on purpose: measurement lives in `kepler-sources`, accounting in `kepler-core`,
//! exposition in `kepler-export`. Nothing depends on this crate except the binary and the
//! config fuzz target. It is the only place that reads the clock.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod activity;
pub mod clock;
pub mod config;
pub mod kube;
pub mod meters;
pub mod monitor;
pub mod redfish;
pub mod run;
