//! Platform power from BMCs over IPMI: DCMI Get Power Reading, or an SDR threshold sensor
//! in Watts where the BMC has no DCMI, read over RMCP+ (IPMI 2.0 LAN).
//!
//! ```text
//!  ipmi thread (tokio, one task per BMC)                monitor loop
//!  session ─► DCMI 0x2C/0x02 ─► IpmiShared { last_good, polled_at } ◄── Ipmi::read (a copy)
//!     │        └ CC 0xC1: SDR walk once, then Get Sensor Reading
//!     └ any failure: session dropped, backoff, re-opened next poll
//! ```
//!
//! Cipher suite 3 only (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128, through the `ipmi`
//! crate); suite 17 (SHA-256) is refused at configuration time. After the session opens,
//! Set Session Privilege Level (App 0x3B) raises it to administrator (user where the account
//! is limited): sessions start at user level, and OpenIPMI's ipmi_sim answers DCMI with
//! 0xD4 (insufficient privilege) until it is sent; pyghmi's Bmc works either way.
//! Only the reading's `current` watts is exported: some BMCs put junk in min/max. A reading
//! whose state says measurement inactive is not exported (the zone reads `Missing`).
//! In-band `/dev/ipmi0` is not implemented: this crate forbids `unsafe`, which the ioctls
//! need.

mod client;
mod config;
mod parse;
mod poller;
mod source;

pub use client::{Bmc, IpmiError, IpmiErrorKind, Method, Sample};
pub use config::{
    load_ipmi_bmcs, normalize_ipmi_endpoint, parse_ipmi_bmcs, IpmiBmcConfig, IpmiNodeBmcs,
    IpmiOptions, IPMI_PORT, SUPPORTED_CIPHER_SUITES,
};
pub use parse::{
    check_response, parse_dcmi_power, parse_watts_sdr, AnalogFormat, DcmiPower, ParseError,
    WattsSensor, CC_INVALID_COMMAND, DCMI_POWER_REQUEST, UNIT_WATTS,
};
pub use poller::{IpmiPoller, IpmiShared, IpmiState};
pub use source::Ipmi;
