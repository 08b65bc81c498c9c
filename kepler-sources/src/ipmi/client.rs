//! One BMC over RMCP+: a session (re-opened after any failure), DCMI Get Power Reading, and
//! the SDR Watts sensor when the BMC has no DCMI.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::config::{IpmiBmcConfig, IpmiOptions};
use super::parse::{
    parse_dcmi_power, parse_watts_sdr, ParseError, WattsSensor, CC_INVALID_COMMAND,
    DCMI_GET_POWER_READING, DCMI_NETFN, DCMI_POWER_REQUEST,
};

const APP_NETFN: u8 = 0x06;
const SET_SESSION_PRIVILEGE: u8 = 0x3B;
const PRIVILEGE_ADMIN: u8 = 0x04;
const STORAGE_NETFN: u8 = 0x0A;
const RESERVE_SDR_REPOSITORY: u8 = 0x22;
const GET_SDR: u8 = 0x23;
const SENSOR_NETFN: u8 = 0x04;
const GET_SENSOR_READING: u8 = 0x2D;
/// The BMC's own slave address: the only sensor owner read without bridging.
const BMC_ADDRESS: u8 = 0x20;
/// Bytes asked per Get SDR: small enough for every BMC's buffer.
const SDR_CHUNK: u8 = 16;
/// A repository walk stops after this many records (a BMC looping its record ids).
const MAX_SDR_RECORDS: usize = 4096;

/// The kind of a failed poll. Each kind is one `kind` label value of
/// `kepler_platform_bmc_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpmiErrorKind {
    /// The endpoint did not resolve or the socket failed (refused, unreachable).
    Connect,
    /// No answer within the timeout and its resends.
    Timeout,
    /// The session was refused: wrong user name or password, or privilege.
    Auth,
    /// The BMC answered in a way RMCP+ does not allow (or a cipher it cannot do).
    Protocol,
    /// A command failed with a completion code.
    Completion,
    /// A response that does not decode (short, wrong group).
    Parse,
    /// Neither DCMI nor an SDR Watts sensor.
    NoPowerReading,
}

impl IpmiErrorKind {
    /// Every kind, in the order self-metrics list them.
    pub const ALL: [IpmiErrorKind; 7] = [
        IpmiErrorKind::Connect,
        IpmiErrorKind::Timeout,
        IpmiErrorKind::Auth,
        IpmiErrorKind::Protocol,
        IpmiErrorKind::Completion,
        IpmiErrorKind::Parse,
        IpmiErrorKind::NoPowerReading,
    ];

    /// The `kind` label value.
    pub fn label(self) -> &'static str {
        match self {
            IpmiErrorKind::Connect => "connect",
            IpmiErrorKind::Timeout => "timeout",
            IpmiErrorKind::Auth => "auth",
            IpmiErrorKind::Protocol => "protocol",
            IpmiErrorKind::Completion => "completion_code",
            IpmiErrorKind::Parse => "parse",
            IpmiErrorKind::NoPowerReading => "no_power_reading",
        }
    }

    /// Position in [`IpmiErrorKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A failed poll: its kind, the step that failed, a detail without credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpmiError {
    /// What went wrong.
    pub kind: IpmiErrorKind,
    /// The step: "session", "DCMI Get Power Reading", "Get SDR", ...
    pub step: &'static str,
    /// A short description.
    pub detail: String,
}

impl IpmiError {
    fn new(kind: IpmiErrorKind, step: &'static str, detail: impl Into<String>) -> IpmiError {
        IpmiError {
            kind,
            step,
            detail: detail.into(),
        }
    }

    fn from_ipmi(step: &'static str, e: ipmi::Error) -> IpmiError {
        let kind = match &e {
            ipmi::Error::Io(_) => IpmiErrorKind::Connect,
            ipmi::Error::Timeout => IpmiErrorKind::Timeout,
            ipmi::Error::AuthenticationFailed(_) => IpmiErrorKind::Auth,
            ipmi::Error::CompletionCode { .. } => IpmiErrorKind::Completion,
            // Open Session and RAKP statuses arrive as protocol errors; a refused user or
            // password is RAKP status 0x0D (unauthorized name) or a bad RAKP 2 HMAC.
            ipmi::Error::ProtocolOwned(m) if m.contains("RAKP") || m.contains("Open Session") => {
                IpmiErrorKind::Auth
            }
            _ => IpmiErrorKind::Protocol,
        };
        IpmiError::new(kind, step, e.to_string())
    }

    fn parse(step: &'static str, e: ParseError) -> IpmiError {
        IpmiError::new(IpmiErrorKind::Parse, step, e.0)
    }
}

impl fmt::Display for IpmiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.step, self.kind.label(), self.detail)
    }
}

impl std::error::Error for IpmiError {}

/// Where the power reading came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// DCMI Get Power Reading.
    Dcmi,
    /// The named SDR threshold sensor in Watts.
    Sdr(String),
}

impl Method {
    /// A short name for labels and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Method::Dcmi => "dcmi",
            Method::Sdr(_) => "sdr",
        }
    }
}

/// One poll's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Watts, or `None` when the BMC says it is not measuring now (DCMI state inactive, or
    /// the sensor's reading unavailable).
    pub watts: Option<f64>,
    /// How it was read.
    pub method: Method,
}

/// A BMC and what is known about it: the open session and the way it reports power.
pub struct Bmc {
    cfg: IpmiBmcConfig,
    opts: IpmiOptions,
    session: Option<ipmi::Client>,
    /// `Some(sensor)` once DCMI was refused and a Watts sensor found.
    sensor: Option<WattsSensor>,
}

impl fmt::Debug for Bmc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bmc")
            .field("id", &self.cfg.id)
            .field("endpoint", &self.cfg.endpoint)
            .field("session", &self.session.is_some())
            .field("sensor", &self.sensor)
            .finish()
    }
}

/// The completion code of `r`, as an error unless it is 0.
fn check(step: &'static str, r: &ipmi::RawResponse) -> Result<(), IpmiError> {
    if r.completion_code == 0 {
        Ok(())
    } else {
        Err(IpmiError::new(
            IpmiErrorKind::Completion,
            step,
            format!("completion code {:#04x}", r.completion_code),
        ))
    }
}

impl Bmc {
    /// A BMC not contacted yet.
    pub fn new(cfg: IpmiBmcConfig, opts: IpmiOptions) -> Bmc {
        Bmc {
            cfg,
            opts,
            session: None,
            sensor: None,
        }
    }

    /// The BMC id.
    pub fn id(&self) -> &str {
        &self.cfg.id
    }

    async fn resolve(&self) -> Result<SocketAddr, IpmiError> {
        let mut addrs = tokio::net::lookup_host(&self.cfg.endpoint)
            .await
            .map_err(|e| IpmiError::new(IpmiErrorKind::Connect, "resolve", e.to_string()))?;
        addrs.next().ok_or_else(|| {
            IpmiError::new(
                IpmiErrorKind::Connect,
                "resolve",
                format!("{} has no address", self.cfg.endpoint),
            )
        })
    }

    /// Opens an RMCP+ session at administrator privilege (the crate falls back to operator
    /// or user when the account is limited) and raises the session to it: a session starts
    /// at user level, and some BMCs refuse commands until Set Session Privilege
    /// Level is sent (ipmi_sim answers DCMI with 0xD4, insufficient privilege, without it).
    async fn open(&self) -> Result<ipmi::Client, IpmiError> {
        let target = self.resolve().await?;
        let client = ipmi::Client::builder(target)
            .username(&self.cfg.username)
            .password(self.cfg.password.expose())
            .privilege_level(ipmi::PrivilegeLevel::Administrator)
            .timeout(self.opts.timeout)
            .retries(self.opts.attempts)
            .build()
            .await
            .map_err(|e| IpmiError::from_ipmi("open session", e))?;
        let r = client
            .send_raw(APP_NETFN, SET_SESSION_PRIVILEGE, &[PRIVILEGE_ADMIN])
            .await
            .map_err(|e| IpmiError::from_ipmi("Set Session Privilege Level", e))?;
        if r.completion_code != 0 {
            // A user-level account cannot rise to admin; DCMI and sensors need only user.
            let r = client
                .send_raw(APP_NETFN, SET_SESSION_PRIVILEGE, &[0x02])
                .await
                .map_err(|e| IpmiError::from_ipmi("Set Session Privilege Level", e))?;
            check("Set Session Privilege Level", &r)?;
        }
        Ok(client)
    }

    /// Reads platform power once: opens a session if none is open, asks DCMI (or the Watts
    /// sensor once DCMI was refused). Any failure closes the session so the next poll starts
    /// a fresh one (BMCs expire idle sessions). Bounded by `deadline`.
    pub async fn poll(&mut self, deadline: Duration) -> Result<Sample, IpmiError> {
        let result = match tokio::time::timeout(deadline, self.poll_inner()).await {
            Ok(r) => r,
            Err(_) => Err(IpmiError::new(
                IpmiErrorKind::Timeout,
                "poll",
                format!("no complete answer within {deadline:?}"),
            )),
        };
        if result.is_err() {
            self.session = None;
        }
        result
    }

    async fn poll_inner(&mut self) -> Result<Sample, IpmiError> {
        if self.session.is_none() {
            self.session = Some(self.open().await?);
        }
        let Some(client) = self.session.as_ref() else {
            unreachable!("session opened above");
        };
        if let Some(sensor) = &self.sensor {
            return read_sensor(client, sensor).await;
        }
        let r = client
            .send_raw(DCMI_NETFN, DCMI_GET_POWER_READING, &DCMI_POWER_REQUEST)
            .await
            .map_err(|e| IpmiError::from_ipmi("DCMI Get Power Reading", e))?;
        if r.completion_code == CC_INVALID_COMMAND {
            let sensor = find_watts_sensor(client).await?;
            let sample = read_sensor(client, &sensor).await;
            self.sensor = Some(sensor);
            return sample;
        }
        check("DCMI Get Power Reading", &r)?;
        let p =
            parse_dcmi_power(&r.data).map_err(|e| IpmiError::parse("DCMI Get Power Reading", e))?;
        Ok(Sample {
            watts: p.active.then_some(f64::from(p.current)),
            method: Method::Dcmi,
        })
    }

    /// Closes the session (best effort, bounded by the timeout).
    pub async fn close(&mut self) {
        if let Some(c) = self.session.take() {
            let _ = tokio::time::timeout(self.opts.timeout, c.close_session()).await;
        }
    }
}

async fn read_sensor(client: &ipmi::Client, sensor: &WattsSensor) -> Result<Sample, IpmiError> {
    let step = "Get Sensor Reading";
    let r = client
        .send_raw(SENSOR_NETFN, GET_SENSOR_READING, &[sensor.number])
        .await
        .map_err(|e| IpmiError::from_ipmi(step, e))?;
    check(step, &r)?;
    let watts = sensor
        .reading(&r.data)
        .map_err(|e| IpmiError::parse(step, e))?;
    Ok(Sample {
        watts,
        method: Method::Sdr(sensor.name.clone()),
    })
}

/// Walks the SDR repository for the first Watts threshold sensor owned by the BMC itself.
async fn find_watts_sensor(client: &ipmi::Client) -> Result<WattsSensor, IpmiError> {
    let r = client
        .send_raw(STORAGE_NETFN, RESERVE_SDR_REPOSITORY, &[])
        .await
        .map_err(|e| IpmiError::from_ipmi("Reserve SDR Repository", e))?;
    check("Reserve SDR Repository", &r)?;
    if r.data.len() < 2 {
        return Err(IpmiError::new(
            IpmiErrorKind::Parse,
            "Reserve SDR Repository",
            "short reservation id",
        ));
    }
    let reservation = [r.data[0], r.data[1]];
    let mut record_id: u16 = 0;
    for _ in 0..MAX_SDR_RECORDS {
        let (next, record) = get_sdr(client, reservation, record_id).await?;
        if let Some(s) = parse_watts_sdr(&record).map_err(|e| IpmiError::parse("Get SDR", e))? {
            if s.owner == BMC_ADDRESS && s.lun == 0 {
                return Ok(s);
            }
        }
        if next == 0xFFFF || next == record_id {
            break;
        }
        record_id = next;
    }
    Err(IpmiError::new(
        IpmiErrorKind::NoPowerReading,
        "Get SDR",
        "no DCMI (completion code 0xc1) and no SDR threshold sensor in Watts",
    ))
}

/// One SDR record read in chunks: (next record id, record bytes with header).
async fn get_sdr(
    client: &ipmi::Client,
    reservation: [u8; 2],
    id: u16,
) -> Result<(u16, Vec<u8>), IpmiError> {
    let step = "Get SDR";
    let [lo, hi] = id.to_le_bytes();
    let mut record = Vec::new();
    let mut next = 0xFFFF;
    let mut total = 5usize;
    while record.len() < total {
        let offset = u8::try_from(record.len())
            .map_err(|_| IpmiError::new(IpmiErrorKind::Parse, step, "SDR record over 255 bytes"))?;
        let want = (total - record.len()).min(usize::from(SDR_CHUNK)) as u8;
        let r = client
            .send_raw(
                STORAGE_NETFN,
                GET_SDR,
                &[reservation[0], reservation[1], lo, hi, offset, want],
            )
            .await
            .map_err(|e| IpmiError::from_ipmi(step, e))?;
        check(step, &r)?;
        if r.data.len() < 3 {
            return Err(IpmiError::new(
                IpmiErrorKind::Parse,
                step,
                "short Get SDR answer",
            ));
        }
        next = u16::from_le_bytes([r.data[0], r.data[1]]);
        let chunk = &r.data[2..];
        if chunk.is_empty() {
            return Err(IpmiError::new(
                IpmiErrorKind::Parse,
                step,
                "empty SDR chunk",
            ));
        }
        record.extend_from_slice(&chunk[..chunk.len().min(total - record.len())]);
        if record.len() >= 5 && total == 5 {
            total = 5 + usize::from(record[4]);
        }
    }
    Ok((next, record))
}
