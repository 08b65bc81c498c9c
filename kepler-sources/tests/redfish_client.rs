//! The Redfish client and background source against a scripted test BMC (issue #6), for what
//! `sushy-static` cannot do: it is GET-only and has no sessions, so login, token expiry,
//! 401s, session deletion, hangs, resets and garbage bodies are served by the small HTTP
//! server in `redfish_support` (no package server found that does sessions: sushy-emulator
//! only has basic auth).
#![cfg(feature = "redfish")]

mod redfish_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kepler_core::{PowerFrame, PowerSource, ReadError, Reading, SourceReport, Timestamp};
use kepler_sources::redfish::{
    walk, Client, FetchErrorKind, Redfish, RedfishOptions, SESSIONS_PATH,
};
use redfish_support::*;

const ROOT: &str =
    r#"{"@odata.id": "/redfish/v1/", "Chassis": {"@odata.id": "/redfish/v1/Chassis"}}"#;

/// A one-chassis tree with PowerControl `watts`; `None` for other paths.
fn tree(path: &str, watts: f64) -> Option<String> {
    match path.trim_end_matches('/') {
        "/redfish/v1" => Some(ROOT.into()),
        "/redfish/v1/Chassis" => {
            Some(r#"{"Members": [{"@odata.id": "/redfish/v1/Chassis/A"}]}"#.into())
        }
        "/redfish/v1/Chassis/A" => {
            Some(r#"{"Id": "A", "Power": {"@odata.id": "/redfish/v1/Chassis/A/Power"}}"#.into())
        }
        "/redfish/v1/Chassis/A/Power" => Some(format!(
            r#"{{"PowerControl": [{{"MemberId": "0", "Name": "Server", "PowerConsumedWatts": {watts}}}]}}"#
        )),
        _ => None,
    }
}

fn serve_tree(req: &Request, watts: f64) -> Reply {
    match tree(&req.path, watts) {
        Some(body) => Reply::json(200, &body),
        None => Reply::json(404, "{}"),
    }
}

fn client(endpoint: &str, timeout_ms: u64, max_body: usize) -> Client {
    Client::new(
        &bmc("b", endpoint),
        Duration::from_millis(timeout_ms),
        max_body,
    )
    .unwrap()
}

/// A BMC with sessions: `valid_token` is the token it currently accepts; each login issues
/// `tok-N` and makes it the valid one.
fn session_bmc(logins: Arc<AtomicUsize>, valid: Arc<std::sync::Mutex<String>>) -> TestBmc {
    TestBmc::start(move |req| {
        if req.method == "POST" && req.path == SESSIONS_PATH {
            if !req
                .body
                .contains("\"Password\":\"test-password-do-not-log\"")
            {
                return Reply::json(401, "{}");
            }
            let n = logins.fetch_add(1, Ordering::SeqCst) + 1;
            let token = format!("tok-{n}");
            *valid.lock().unwrap() = token.clone();
            return Reply::Send {
                status: 201,
                headers: vec![
                    ("X-Auth-Token".into(), token),
                    ("Location".into(), format!("{SESSIONS_PATH}/{n}")),
                ],
                body: b"{}".to_vec(),
            };
        }
        if req.header("X-Auth-Token") != Some(valid.lock().unwrap().as_str()) {
            return Reply::json(401, "{}");
        }
        if req.method == "DELETE" {
            return Reply::json(204, "");
        }
        serve_tree(req, 250.0)
    })
}

#[test]
fn issue_6_session_login_then_token_reuse() {
    let logins = Arc::new(AtomicUsize::new(0));
    let valid = Arc::new(std::sync::Mutex::new(String::new()));
    let bmc = session_bmc(logins.clone(), valid);
    let c = client(&bmc.endpoint(), 2000, 1 << 20);
    let w = block_on(walk(&c)).unwrap();
    assert_eq!(w.readings.len(), 1);
    assert_eq!(w.readings[0].watts, 250.0);
    assert_eq!(logins.load(Ordering::SeqCst), 1);
    let reqs = bmc.requests();
    let gets: Vec<_> = reqs.iter().filter(|r| r.method == "GET").collect();
    assert_eq!(gets.len(), 4);
    assert!(gets
        .iter()
        .all(|r| r.header("X-Auth-Token") == Some("tok-1")));
    assert!(gets.iter().all(|r| r.header("Authorization").is_none()));
    assert!(c.has_session());
    // Neither the password nor the session token shows in Debug output.
    let debug = format!("{c:?}");
    assert!(!debug.contains("test-password-do-not-log"), "{debug}");
    assert!(!debug.contains("tok-1"), "{debug}");
}

#[test]
fn issue_6_expired_token_logs_in_again_once() {
    let logins = Arc::new(AtomicUsize::new(0));
    let valid = Arc::new(std::sync::Mutex::new(String::new()));
    let bmc = session_bmc(logins.clone(), valid.clone());
    let c = client(&bmc.endpoint(), 2000, 1 << 20);
    block_on(walk(&c)).unwrap();
    // The BMC drops the session (reboot, expiry).
    *valid.lock().unwrap() = "gone".into();
    let w = block_on(walk(&c)).unwrap();
    assert_eq!(w.readings[0].watts, 250.0);
    assert_eq!(logins.load(Ordering::SeqCst), 2);
    let last = bmc
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "GET")
        .unwrap();
    assert_eq!(last.header("X-Auth-Token"), Some("tok-2"));
}

#[test]
fn issue_6_wrong_password_is_an_auth_error_after_one_try() {
    let logins = Arc::new(AtomicUsize::new(0));
    let bmc = session_bmc(logins, Arc::new(std::sync::Mutex::new(String::new())));
    let mut cfg = bmc_cfg(&bmc.endpoint());
    cfg.password = kepler_sources::redfish::Secret::new("wrong");
    let c = Client::new(&cfg, Duration::from_secs(2), 1 << 20).unwrap();
    let e = block_on(walk(&c)).unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Auth);
    assert!(!e.to_string().contains("wrong"), "{e}");
    assert_eq!(
        bmc.requests().iter().filter(|r| r.method == "POST").count(),
        1
    );
}

fn bmc_cfg(endpoint: &str) -> kepler_sources::redfish::BmcConfig {
    bmc("b", endpoint)
}

#[test]
fn issue_6_401_after_relogin_gives_up_instead_of_looping() {
    // Login works but every GET is refused (an account without read permission).
    let posts = Arc::new(AtomicUsize::new(0));
    let p = posts.clone();
    let bmc = TestBmc::start(move |req| {
        if req.method == "POST" {
            p.fetch_add(1, Ordering::SeqCst);
            return Reply::Send {
                status: 201,
                headers: vec![("X-Auth-Token".into(), "t".into())],
                body: b"{}".to_vec(),
            };
        }
        Reply::json(401, "{}")
    });
    let c = client(&bmc.endpoint(), 2000, 1 << 20);
    let e = block_on(walk(&c)).unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Auth);
    assert_eq!(
        posts.load(Ordering::SeqCst),
        2,
        "one login, one retry, then stop"
    );
}

#[test]
fn issue_6_no_session_service_falls_back_to_basic_auth() {
    let bmc = TestBmc::start(|req| {
        if req.method == "POST" {
            return Reply::json(405, "{}");
        }
        // base64("admin:test-password-do-not-log")
        if req.header("Authorization") != Some("Basic YWRtaW46dGVzdC1wYXNzd29yZC1kby1ub3QtbG9n") {
            return Reply::json(401, "{}");
        }
        serve_tree(req, 99.5)
    });
    let c = client(&bmc.endpoint(), 2000, 1 << 20);
    let w = block_on(walk(&c)).unwrap();
    assert_eq!(w.readings[0].watts, 99.5);
    assert!(!c.has_session());
}

#[test]
fn issue_6_hung_bmc_times_out() {
    let bmc = TestBmc::start(|_| Reply::Hang);
    let c = client(&bmc.endpoint(), 300, 1 << 20);
    let t0 = Instant::now();
    let e = block_on(walk(&c)).unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Timeout, "{e}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

#[test]
fn issue_6_reset_mid_body_truncated_garbage_and_huge_bodies() {
    let bmc = TestBmc::start(|req| match req.path.as_str() {
        "/redfish/v1/" => Reply::Truncate {
            len: 500,
            part: br#"{"@odata.id": "/redfish/v1/", "Chas"#.to_vec(),
        },
        "/html" => Reply::Send {
            status: 200,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: b"<html><body>Please log in</body></html>".to_vec(),
        },
        "/cut-json" => Reply::json(200, r#"{"PowerControl": [{"PowerConsumedWatts": 12"#),
        "/huge" => Reply::json(200, &format!("{{\"pad\": \"{}\"}}", "x".repeat(2 << 20))),
        "/boom" => Reply::json(503, "{}"),
        "/teapot" => Reply::json(418, "{}"),
        "/array" => Reply::json(200, "[1, 2]"),
        _ => Reply::json(404, "{}"),
    });
    let c = client(&bmc.endpoint(), 2000, 1 << 20);
    let kind = |p: &str| block_on(c.get_resource(p)).unwrap_err().kind;
    // POST login answers 404 here: basic auth from then on.
    assert_eq!(kind("/redfish/v1/"), FetchErrorKind::Body);
    assert_eq!(kind("/html"), FetchErrorKind::Parse);
    assert_eq!(kind("/cut-json"), FetchErrorKind::Parse);
    assert_eq!(kind("/huge"), FetchErrorKind::TooLarge);
    assert_eq!(kind("/boom"), FetchErrorKind::Server);
    assert_eq!(kind("/teapot"), FetchErrorKind::Status);
    assert_eq!(kind("/array"), FetchErrorKind::Parse);
    assert_eq!(kind("/nowhere"), FetchErrorKind::NotFound);
}

#[test]
fn issue_6_one_bad_chassis_and_a_dangling_link_spoil_nothing_else() {
    let bmc = TestBmc::start(|req| {
        let body = match req.path.trim_end_matches('/') {
            "/redfish/v1" => ROOT.to_string(),
            "/redfish/v1/Chassis" => r#"{"Members": [
                {"@odata.id": "/redfish/v1/Chassis/Gone"},
                {"@odata.id": "/redfish/v1/Chassis/Bad"},
                {"@odata.id": "/redfish/v1/Chassis/Good"},
                {"@odata.id": "/redfish/v1/Chassis/Good/"}]}"#
                .to_string(),
            "/redfish/v1/Chassis/Bad" => {
                r#"{"Id": "Bad", "Power": {"@odata.id": "/redfish/v1/Chassis/Bad/Power"}}"#.into()
            }
            "/redfish/v1/Chassis/Bad/Power" => return Reply::json(500, "{}"),
            "/redfish/v1/Chassis/Good" => {
                r#"{"Id": "Good", "Power": {"@odata.id": "/redfish/v1/Chassis/Good/Power"}}"#.into()
            }
            "/redfish/v1/Chassis/Good/Power" => {
                r#"{"PowerControl": [{"MemberId": "0", "PowerConsumedWatts": 410}]}"#.into()
            }
            _ => return Reply::json(404, "{}"),
        };
        Reply::json(200, &body)
    });
    let c = client(&bmc.endpoint(), 2000, 1 << 20);
    let w = block_on(walk(&c)).unwrap();
    let got: Vec<_> = w
        .readings
        .iter()
        .map(|r| (r.chassis_id.as_str(), r.watts))
        .collect();
    assert_eq!(got, [("Good", 410.0)], "duplicate Good listed once");
    let kinds: Vec<_> = w
        .partial_errors
        .iter()
        .map(|e| (e.kind, e.path.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (FetchErrorKind::NotFound, "/redfish/v1/Chassis/Gone"),
            (FetchErrorKind::Server, "/redfish/v1/Chassis/Bad/Power"),
        ]
    );
}

fn fast_opts(interval_ms: u64, staleness_ms: u64, timeout_ms: u64) -> RedfishOptions {
    RedfishOptions {
        interval: Duration::from_millis(interval_ms),
        staleness: Duration::from_millis(staleness_ms),
        http_timeout: Duration::from_millis(timeout_ms),
        max_body: 1 << 20,
        max_backoff: Duration::from_secs(10),
    }
}

/// Reads `src` until it yields `n` good samples, or panics after 10 s.
fn read_until(src: &mut Redfish, n: usize) -> (PowerFrame, Timestamp) {
    let t0 = Instant::now();
    loop {
        let at = Timestamp(t0.elapsed().as_nanos() as u64 + 1_000_000_000_000);
        let mut f = PowerFrame::default();
        src.read(at, &mut f);
        if f.samples.iter().filter(|s| s.reading.is_ok()).count() >= n {
            return (f, at);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no reading after 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn issue_6_source_reads_never_wait_for_a_hung_bmc() {
    let hung = TestBmc::start(|_| Reply::Hang);
    let good = TestBmc::start(|req| serve_tree(req, 321.0));
    let mut src = Redfish::start(
        vec![bmc("hung", &hung.endpoint()), bmc("good", &good.endpoint())],
        fast_opts(60_000, 60_000, 1_500),
    )
    .unwrap();
    // Every read returns at once, while the hung BMC holds a request open.
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let t = Instant::now();
        src.read(Timestamp(1), &mut PowerFrame::default());
        slowest = slowest.max(t.elapsed());
    }
    assert!(slowest < Duration::from_millis(5), "{slowest:?}");
    let (frame, at) = read_until(&mut src, 1);
    assert_eq!(frame.samples.len(), 1);
    let s = &frame.samples[0];
    assert_eq!(
        s.reading,
        Ok(Reading::Power(kepler_core::MicroWatts(321_000_000)))
    );
    let sampled = s.sampled_at.expect("a polled value carries its poll time");
    assert!(
        sampled <= at,
        "stamped with the poll time, not the read time"
    );
    assert_eq!(s.zone.source, kepler_core::SourceKind::Redfish);
    assert_eq!(s.zone.kind, kepler_core::ZoneKind::Platform);
    // After the timeout, the hung BMC is down with one timeout; the good one is up.
    std::thread::sleep(Duration::from_millis(1_800));
    let mut report = SourceReport::default();
    src.report(at, &mut report);
    let hung_status = report.endpoints.iter().find(|e| e.id == "hung").unwrap();
    assert!(!hung_status.up);
    assert!(
        hung_status.errors.contains(&("timeout", 1)),
        "{:?}",
        hung_status.errors
    );
    let good_status = report.endpoints.iter().find(|e| e.id == "good").unwrap();
    assert!(good_status.up && good_status.last_success.is_some());
    let labels = &report.zones[0].labels;
    assert_eq!(
        labels.to_vec(),
        vec![
            ("bmc_id", "good".to_string()),
            ("chassis_id", "A".to_string()),
            ("power_control_id", "0".to_string()),
            ("power_control_name", "Server".to_string()),
            ("source_id", "0".to_string()),
            ("source_name", "Server".to_string()),
            ("source_type", "PowerControl".to_string()),
        ]
    );
    // Shutdown does not wait for the hung request beyond the HTTP timeout.
    let t = Instant::now();
    drop(src);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn issue_6_stale_readings_are_not_exported() {
    let bmc_srv = TestBmc::start(|req| serve_tree(req, 150.0));
    let mut src = Redfish::start(
        vec![bmc("b", &bmc_srv.endpoint())],
        fast_opts(60_000, 300, 1_000),
    )
    .unwrap();
    let (first, at) = read_until(&mut src, 1);
    // A later read of the same poll carries the same timestamp, so the engine integrates
    // each poll once.
    let mut again = PowerFrame::default();
    src.read(Timestamp(at.0 + 50_000_000), &mut again);
    assert!(first.samples[0].sampled_at.is_some());
    assert_eq!(again.samples[0].sampled_at, first.samples[0].sampled_at);
    let mut report = SourceReport::default();
    src.report(at, &mut report);
    assert!(report.zones[0].latest.is_some());
    std::thread::sleep(Duration::from_millis(400));
    let mut f = PowerFrame::default();
    src.read(at, &mut f);
    assert_eq!(f.samples.len(), 1);
    assert!(
        matches!(f.samples[0].reading, Err(ReadError::Stale { .. })),
        "{:?}",
        f.samples[0]
    );
    report.clear();
    src.report(at, &mut report);
    assert_eq!(report.zones[0].latest, None);
}

#[test]
fn issue_6_failures_back_off_and_sessions_are_deleted_on_shutdown() {
    // A BMC whose root fails: polls space out (100, 200, 400, 800 ms...) instead of
    // hammering it every 100 ms.
    let roots = Arc::new(AtomicUsize::new(0));
    let r = roots.clone();
    let failing = TestBmc::start(move |_| {
        // Each poll fails at its first request (the login answers 500 too).
        r.fetch_add(1, Ordering::SeqCst);
        Reply::json(500, "{}")
    });
    let logins = Arc::new(AtomicUsize::new(0));
    let sessions = session_bmc(logins, Arc::new(std::sync::Mutex::new(String::new())));
    let mut src = Redfish::start(
        vec![
            bmc("failing", &failing.endpoint()),
            bmc("s", &sessions.endpoint()),
        ],
        fast_opts(100, 60_000, 1_000),
    )
    .unwrap();
    read_until(&mut src, 1);
    std::thread::sleep(Duration::from_millis(1_400));
    src.shutdown();
    let polls = roots.load(Ordering::SeqCst);
    // Fixed 100 ms would give ~15; backoff gives about 4 (0, 0.1, 0.3, 0.7, 1.5 s ±10%).
    assert!((2..=6).contains(&polls), "{polls} polls");
    let deletes: Vec<_> = sessions
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1, "the session is deleted once on shutdown");
    assert!(deletes[0].path.starts_with(SESSIONS_PATH));
    assert!(deletes[0].header("X-Auth-Token").is_some());
}
