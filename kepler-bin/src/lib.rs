//! The `kepler` binary's library half: configuration, the clock, signals, threads and wiring.
//!
//! It is thin on purpose: measurement lives in `kepler-sources` (and `kepler-bpf`,
//! `kepler-k8s`), accounting in `kepler-core`, source selection and the tick in
//! `kepler-runtime`, exposition in `kepler-export`. Nothing depends on this crate except the
//! binary and the config fuzz target.
//!
//! Subcommands share the exporter's configuration and runtime: [`measure`] is `kepler run --
//! CMD`, one command's energy.
//!
//! # Who reads a clock
//!
//! The engines never do: every timestamp they see comes from [`clock::Clock`], started here
//! and read once per tick, right before the runtime reads the meters. Other monotonic clocks are read where a
//! value's age or a schedule is local to a component: the Redfish poller and source (when a
//! BMC was last polled, how stale its reading is, stamped back onto the tick's clock), the
//! pod informer (cache expiry, request timings), the runtime (read durations) and the
//! exposition (render duration). Only [`clock::Clock`] reads the wall clock, once, to turn
//! monotonic timestamps into Unix times.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod clock;
pub mod config;
pub mod measure;
pub mod output;
pub mod run;
pub mod top;
