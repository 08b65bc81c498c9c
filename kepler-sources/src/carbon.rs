//! Grid carbon intensity (issue 20, section 3): where `carbon.intensity` comes from, read off
//! the tick path.
//!
//! `carbon.intensity` is one of:
//!
//! - a number, gCO2e/kWh, used as it is (`carbon.intensity: 400`);
//! - an `http://` or `https://` URL, fetched every refresh interval;
//! - anything else is a file path (`file://` prefix optional), read every refresh interval.
//!
//! A file or a response body holds one of ([`parse_intensity`]):
//!
//! - one number: `412.5`;
//! - a small JSON object: `{"intensity": 412.5, "timestamp": "2026-12-07T21:00:00Z"}`. The
//!   value is `intensity`, else `carbonIntensity` (Electricity Maps' field), else `value`;
//!   the optional time is `timestamp` or `datetime`, as RFC 3339 or Unix seconds;
//! - Prometheus text exposition with exactly one sample (a `/federate` or exporter path
//!   that serves the one series), its timestamp optional.
//!
//! # Age and staleness
//!
//! A value's age is measured from the time it carries (the JSON or sample timestamp), else,
//! for a file, from the file's modification time, else from when it was fetched. Once the
//! age passes `stale_after` the value is *stale*: it is still used (the last known value
//! beats none) and [`IntensityStatus::stale`] says so, as does the exporter's
//! `kepler_carbon_intensity_stale`. A failed read keeps the last value too; failures are
//! counted and logged once per change of problem.
//!
//! One thread polls; the tick only locks a mutex for a copy of the latest value.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls_platform_verifier::BuilderVerifierExt;

use crate::{Error, ErrorKind};

/// The largest file or response body read, in bytes: a number, a small JSON object or one
/// Prometheus sample fits many times over.
pub const MAX_BODY: usize = 64 * 1024;

/// Where the intensity comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum IntensitySpec {
    /// A fixed gCO2e/kWh.
    Constant(f64),
    /// A file the user keeps current.
    File(PathBuf),
    /// An `http://` or `https://` URL.
    Url(String),
}

impl IntensitySpec {
    /// Reads the value of `carbon.intensity`: a number, a URL or a path (module docs).
    pub fn parse(text: &str) -> Result<IntensitySpec, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err(
                "is empty; give gCO2e/kWh (e.g. 400), a file path or an http(s) URL".into(),
            );
        }
        if let Ok(v) = t.parse::<f64>() {
            return check_value(v).map(IntensitySpec::Constant);
        }
        let lower = t.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return match reqwest::Url::parse(t) {
                Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => {
                    Ok(IntensitySpec::Url(t.to_string()))
                }
                Ok(_) => Err(format!("{t:?} has no host")),
                Err(e) => Err(format!("{t:?} is not a valid URL: {e}")),
            };
        }
        if lower.contains("://") && !lower.starts_with("file://") {
            return Err(format!(
                "{t:?}: only http://, https:// and file:// URLs are read"
            ));
        }
        let path = t.strip_prefix("file://").unwrap_or(t);
        if path.is_empty() {
            return Err(format!("{t:?} names no file"));
        }
        Ok(IntensitySpec::File(PathBuf::from(path)))
    }

    /// `constant`, `file` or `url`.
    pub fn kind(&self) -> &'static str {
        match self {
            IntensitySpec::Constant(_) => "constant",
            IntensitySpec::File(_) => "file",
            IntensitySpec::Url(_) => "url",
        }
    }
}

/// A gCO2e/kWh value as read: finite and not negative.
fn check_value(v: f64) -> Result<f64, String> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("{v} is not a gCO2e/kWh value (a number >= 0)"))
    }
}

/// How the intensity is read.
#[derive(Debug, Clone, PartialEq)]
pub struct IntensityOptions {
    /// Where from (`carbon.intensity`).
    pub spec: IntensitySpec,
    /// Time between reads of a file or URL (`carbon.refreshInterval`).
    pub refresh: Duration,
    /// A value older than this is stale (`carbon.staleAfter`).
    pub stale_after: Duration,
    /// Limit on one HTTP request, connect included (`carbon.httpTimeout`).
    pub http_timeout: Duration,
}

impl IntensityOptions {
    /// Defaults (refresh 1 min, stale after 2 h, HTTP timeout 10 s) for `spec`.
    pub fn new(spec: IntensitySpec) -> IntensityOptions {
        IntensityOptions {
            spec,
            refresh: Duration::from_secs(60),
            stale_after: Duration::from_secs(2 * 3600),
            http_timeout: Duration::from_secs(10),
        }
    }
}

/// One value read from a file or a body.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParsedIntensity {
    /// gCO2e/kWh.
    pub grams_per_kwh: f64,
    /// The time the value is for, when the content says.
    pub timestamp: Option<SystemTime>,
}

/// Reads a file's or body's content: one number, a small JSON object, or Prometheus text
/// with one sample (module docs). The error says what was found.
pub fn parse_intensity(text: &str) -> Result<ParsedIntensity, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty; expected a number, a JSON object or one Prometheus sample".into());
    }
    if let Ok(v) = t.parse::<f64>() {
        return Ok(ParsedIntensity {
            grams_per_kwh: check_value(v)?,
            timestamp: None,
        });
    }
    if t.starts_with('{') {
        return parse_json(t);
    }
    parse_prometheus(t)
}

fn parse_json(t: &str) -> Result<ParsedIntensity, String> {
    let v: serde_json::Value =
        serde_json::from_str(t).map_err(|e| format!("not valid JSON: {e}"))?;
    let Some(obj) = v.as_object() else {
        return Err("JSON is not an object".into());
    };
    let (field, value) = ["intensity", "carbonIntensity", "value"]
        .iter()
        .find_map(|k| obj.get(*k).map(|v| (*k, v)))
        .ok_or("JSON object has no \"intensity\", \"carbonIntensity\" or \"value\"")?;
    let grams = value
        .as_f64()
        .ok_or_else(|| format!("JSON \"{field}\" is {value}, not a number"))?;
    let grams = check_value(grams).map_err(|e| format!("JSON \"{field}\": {e}"))?;
    let timestamp = match ["timestamp", "datetime"]
        .iter()
        .find_map(|k| obj.get(*k).map(|v| (*k, v)))
    {
        None | Some((_, serde_json::Value::Null)) => None,
        Some((field, v)) => {
            let at = match v {
                serde_json::Value::Number(n) => n.as_f64().and_then(unix_secs),
                serde_json::Value::String(s) => parse_rfc3339(s),
                _ => None,
            };
            Some(at.ok_or_else(|| {
                format!("JSON \"{field}\" is {v}, not RFC 3339 time or Unix seconds")
            })?)
        }
    };
    Ok(ParsedIntensity {
        grams_per_kwh: grams,
        timestamp,
    })
}

/// Prometheus text exposition (0.0.4 or OpenMetrics) with exactly one sample.
fn parse_prometheus(t: &str) -> Result<ParsedIntensity, String> {
    let samples: Vec<&str> = t
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let line = match samples.as_slice() {
        [one] => *one,
        [] => return Err("no number, JSON object or Prometheus sample".into()),
        many => {
            return Err(format!(
                "{} Prometheus samples; point carbon.intensity at one series",
                many.len()
            ))
        }
    };
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    let valid_name = name.chars().enumerate().all(|(i, c)| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
    });
    if name.is_empty() || !valid_name {
        let shown: String = line.chars().take(60).collect();
        return Err(format!(
            "{shown:?} is not a number, a JSON object or a Prometheus sample"
        ));
    }
    // After the labels (the last `}`: label values may hold spaces, values and timestamps
    // never hold braces), or after the name.
    let rest = match line.rfind('}') {
        Some(i) if line.contains('{') => &line[i + 1..],
        _ => line.split_once(char::is_whitespace).map_or("", |(_, r)| r),
    };
    let mut fields = rest.split_whitespace();
    let value = fields
        .next()
        .ok_or_else(|| format!("sample {line:?} has no value"))?;
    let v: f64 = value
        .parse()
        .map_err(|_| format!("sample {line:?}: value {value:?} is not a number"))?;
    let grams = check_value(v).map_err(|e| format!("sample {line:?}: {e}"))?;
    let timestamp = match fields.next() {
        None => None,
        Some(ts) => {
            // Text format 0.0.4: milliseconds, an integer. OpenMetrics: seconds, may have
            // a fraction.
            let at = match ts.parse::<i64>() {
                Ok(ms) => unix_secs(ms as f64 / 1000.0),
                Err(_) => ts.parse::<f64>().ok().and_then(unix_secs),
            };
            Some(at.ok_or_else(|| format!("sample {line:?}: bad timestamp {ts:?}"))?)
        }
    };
    if fields.next().is_some() {
        return Err(format!(
            "sample {line:?} has more than a value and a timestamp"
        ));
    }
    Ok(ParsedIntensity {
        grams_per_kwh: grams,
        timestamp,
    })
}

fn unix_secs(s: f64) -> Option<SystemTime> {
    (0.0..1e11)
        .contains(&s)
        .then(|| UNIX_EPOCH + Duration::from_secs_f64(s))
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` (`t` or a space may separate date and time).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0i64, |a, d| a * 10 + i64::from(d - b'0')))
    };
    let sep = |i: usize, ok: &[u8]| b.get(i).is_some_and(|c| ok.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if sep(i, b".") {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos += u32::from(b[i] - b'0') * 10u32.pow(8 - (i - start) as u32);
            }
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&c @ (b'+' | b'-')) if i + 6 == b.len() && sep(i + 3, b":") => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if c == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// What the tick uses: the value in force and how fresh it is.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct IntensityStatus {
    /// The latest value read, gCO2e/kWh; `None` until a read succeeds.
    pub grams_per_kwh: Option<f64>,
    /// Its age (module docs); `None` for a constant or before any value.
    pub age: Option<Duration>,
    /// True when the value is older than `stale_after`, or there is none yet.
    pub stale: bool,
    /// Failed reads since start.
    pub read_errors: u64,
}

/// The poller's shared state.
#[derive(Debug, Default)]
struct State {
    value: Option<f64>,
    /// The time the value is for (its timestamp, else the file's modification time).
    at: Option<SystemTime>,
    /// When it was read, for values that carry no time.
    read_at: Option<Instant>,
    errors: u64,
    /// The latest failure, to log once per change.
    problem: Option<String>,
}

/// The intensity feed: a constant, or a thread that reads a file or URL every refresh
/// interval. Dropping it stops the thread.
#[derive(Debug)]
pub struct IntensityFeed {
    spec_kind: &'static str,
    constant: Option<f64>,
    stale_after: Duration,
    state: Arc<Mutex<State>>,
    /// Dropped with the feed, which wakes the polling thread and ends it. The thread is
    /// not joined: a fetch in progress can take up to the HTTP timeout, and shutting kepler
    /// down must not wait for a grid-intensity service.
    _stop: Option<mpsc::Sender<()>>,
}

impl IntensityFeed {
    /// Starts reading. For a file or URL the first read is made before this returns (a
    /// URL's bounded by the HTTP timeout), so that the first tick has a value when the
    /// source has one; a first read that fails is logged and retried every refresh
    /// interval. Fails only when the HTTP client or the thread cannot be made.
    pub fn start(opts: IntensityOptions) -> Result<IntensityFeed, Error> {
        let spec_kind = opts.spec.kind();
        let state = Arc::new(Mutex::new(State::default()));
        let mut feed = IntensityFeed {
            spec_kind,
            constant: None,
            stale_after: opts.stale_after,
            state: state.clone(),
            _stop: None,
        };
        let mut reader = match &opts.spec {
            IntensitySpec::Constant(v) => {
                feed.constant = Some(*v);
                return Ok(feed);
            }
            IntensitySpec::File(p) => Reader::File(p.clone()),
            IntensitySpec::Url(u) => Reader::Url {
                client: http_client(opts.http_timeout)
                    .map_err(|e| Error::new(ErrorKind::InvalidConfig, None, e))?,
                url: u.clone(),
                runtime: None,
            },
        };
        // What the log names: a URL without its query or user info, which may hold a
        // token.
        let source = match &opts.spec {
            IntensitySpec::File(p) => p.display().to_string(),
            IntensitySpec::Url(u) => reqwest::Url::parse(u).map_or_else(
                |_| "the URL".to_string(),
                |u| format!("{}{}", u.origin().ascii_serialization(), u.path()),
            ),
            IntensitySpec::Constant(_) => String::new(),
        };
        let (stop, stop_rx) = mpsc::channel::<()>();
        let (first_tx, first_rx) = mpsc::sync_channel::<()>(1);
        let refresh = opts.refresh;
        // Not joined (see `_stop`).
        let _thread = std::thread::Builder::new()
            .name("carbon-intensity".into())
            .spawn(move || {
                record(&state, &source, reader.read());
                let _ = first_tx.send(());
                while let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(refresh) {
                    record(&state, &source, reader.read());
                }
            })
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    None,
                    format!("cannot start the carbon intensity thread: {e}"),
                )
            })?;
        let _ = first_rx.recv_timeout(opts.http_timeout + Duration::from_secs(1));
        feed._stop = Some(stop);
        Ok(feed)
    }

    /// `constant`, `file` or `url`.
    pub fn kind(&self) -> &'static str {
        self.spec_kind
    }

    /// The value in force now, its age and whether it is stale.
    pub fn status(&self) -> IntensityStatus {
        if let Some(v) = self.constant {
            return IntensityStatus {
                grams_per_kwh: Some(v),
                age: None,
                stale: false,
                read_errors: 0,
            };
        }
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let age = match (st.value, st.at, st.read_at) {
            (None, _, _) => None,
            (Some(_), Some(at), _) => {
                Some(SystemTime::now().duration_since(at).unwrap_or_default())
            }
            (Some(_), None, Some(read)) => Some(read.elapsed()),
            (Some(_), None, None) => None,
        };
        IntensityStatus {
            grams_per_kwh: st.value,
            age,
            stale: st.value.is_none() || age.is_some_and(|a| a > self.stale_after),
            read_errors: st.errors,
        }
    }
}

/// Stores one read's outcome; logs a failure once per change of problem, and the recovery.
fn record(
    state: &Mutex<State>,
    source: &str,
    result: Result<(ParsedIntensity, Option<SystemTime>), String>,
) {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok((p, fallback_at)) => {
            if st.problem.take().is_some() || st.value.is_none() {
                tracing::info!(
                    source,
                    grams_per_kwh = p.grams_per_kwh,
                    "carbon intensity read"
                );
            }
            st.value = Some(p.grams_per_kwh);
            st.at = p.timestamp.or(fallback_at);
            st.read_at = Some(Instant::now());
        }
        Err(e) => {
            st.errors += 1;
            if st.problem.as_deref() != Some(e.as_str()) {
                match st.value {
                    Some(v) => {
                        tracing::warn!(source, error = %e, keeping = v, "carbon intensity read failed; the last value stays in use")
                    }
                    None => {
                        tracing::warn!(source, error = %e, "carbon intensity read failed; no carbon is counted until a value is read")
                    }
                }
                st.problem = Some(e);
            }
        }
    }
}

enum Reader {
    File(PathBuf),
    Url {
        client: reqwest::Client,
        url: String,
        /// Made on the polling thread at its first fetch.
        runtime: Option<tokio::runtime::Runtime>,
    },
}

impl Reader {
    /// One read: the value, and the time to age it from when the content has none (a
    /// file's modification time).
    fn read(&mut self) -> Result<(ParsedIntensity, Option<SystemTime>), String> {
        match self {
            Reader::File(path) => read_file(path),
            Reader::Url {
                client,
                url,
                runtime,
            } => {
                if runtime.is_none() {
                    *runtime = Some(
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .map_err(|e| format!("cannot start the HTTP runtime: {e}"))?,
                    );
                }
                let rt = runtime.as_ref().expect("made above");
                let body = rt.block_on(fetch(client, url))?;
                parse_intensity(&body).map(|p| (p, None))
            }
        }
    }
}

fn read_file(path: &Path) -> Result<(ParsedIntensity, Option<SystemTime>), String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let modified = file.metadata().and_then(|m| m.modified()).ok();
    let mut text = String::new();
    file.take(MAX_BODY as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read: {e}"))?;
    if text.len() > MAX_BODY {
        return Err(format!("larger than {MAX_BODY} bytes"));
    }
    parse_intensity(&text).map(|p| (p, modified))
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let mut resp = client
        .get(url)
        .header(
            reqwest::header::ACCEPT,
            "text/plain, application/json;q=0.9, */*;q=0.5",
        )
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP status {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading the body failed: {e}"))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(format!("body larger than {MAX_BODY} bytes"));
        }
    }
    String::from_utf8(body).map_err(|_| "body is not UTF-8".into())
}

fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    // kepler-crypto's provider, given explicitly (the process-wide default panics when two
    // providers are linked), and the platform's roots.
    let tls = rustls::ClientConfig::builder_with_provider(kepler_crypto::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_platform_verifier()
        .map_err(|e| e.to_string())?
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("kepler-rs/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(s: &str) -> u64 {
        parse_rfc3339(s)
            .unwrap_or_else(|| panic!("{s} should parse"))
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(unix("1970-01-01T00:00:00Z"), 0);
        // `date -u -d 2026-12-07T21:00:00Z +%s`
        assert_eq!(unix("2026-12-07T21:00:00Z"), 1_796_677_200);
        assert_eq!(unix("2026-12-07T22:30:00+01:30"), 1_796_677_200);
        assert_eq!(unix("2026-12-07 19:00:00-02:00"), 1_796_677_200);
        assert_eq!(unix("2000-02-29T00:00:00.999Z"), 951_782_400);
        let ms = parse_rfc3339("2018-04-25T18:07:00.350Z")
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap();
        assert_eq!((ms.as_secs(), ms.subsec_millis()), (1_524_679_620, 350));
        for bad in [
            "",
            "2026-12-07",
            "2026-12-07T21:00:00",
            "2026-13-07T21:00:00Z",
            "2026-12-07T21:00:00.Z",
            "2026-12-07T21:00:00+0100",
            "2026-12-07T21:00:00Zjunk",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn specs() {
        assert_eq!(
            IntensitySpec::parse("400"),
            Ok(IntensitySpec::Constant(400.0))
        );
        assert_eq!(
            IntensitySpec::parse(" 12.5 "),
            Ok(IntensitySpec::Constant(12.5))
        );
        assert_eq!(
            IntensitySpec::parse("/var/lib/kepler/intensity.json"),
            Ok(IntensitySpec::File("/var/lib/kepler/intensity.json".into()))
        );
        assert_eq!(
            IntensitySpec::parse("file:///run/ci.txt"),
            Ok(IntensitySpec::File("/run/ci.txt".into()))
        );
        assert_eq!(
            IntensitySpec::parse("https://grid.example/ci?zone=DE"),
            Ok(IntensitySpec::Url("https://grid.example/ci?zone=DE".into()))
        );
        for (bad, says) in [
            ("", "empty"),
            ("-3", "-3"),
            ("NaN", "NaN"),
            ("inf", "inf"),
            ("ftp://x/y", "only http"),
            ("http://", "valid URL"),
            ("file://", "no file"),
        ] {
            let e = IntensitySpec::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
