//! Every Redfish fixture case served by the real `sushy-static` (PyPI `sushy-tools`) and read
//! through the real client (issue #6). Expected watts come from the fixture files themselves;
//! each case says which file and field.
#![cfg(feature = "redfish")]

mod redfish_support;

use std::time::Duration;

use kepler_sources::redfish::{walk, Client, FetchErrorKind, ReadingKind, Walk};
use redfish_support::*;

fn walk_case(case: &str) -> Walk {
    let sushy = Sushy::start(case);
    let client = Client::new(&bmc("b", &sushy.endpoint), Duration::from_secs(5), 8 << 20).unwrap();
    block_on(walk(&client)).unwrap_or_else(|e| panic!("{case}: {e}"))
}

type Expected<'a> = (&'a str, ReadingKind, &'a str, &'a str, f64);

/// Checks the series (chassis, kind, id, name, watts) and the node power per chassis.
fn check(case: &str, want: &[Expected<'_>], node: &[(&str, Option<f64>)]) {
    let w = walk_case(case);
    let got: Vec<Expected<'_>> = w
        .readings
        .iter()
        .map(|r| {
            (
                r.chassis_id.as_str(),
                r.kind,
                r.id.as_str(),
                r.name.as_str(),
                r.watts,
            )
        })
        .collect();
    assert_eq!(got, want, "{case}: readings");
    let nodes: Vec<(String, Option<f64>)> = w.node_watts();
    let node: Vec<(String, Option<f64>)> = node.iter().map(|(c, x)| (c.to_string(), *x)).collect();
    assert_eq!(nodes, node, "{case}: node power");
}

use ReadingKind::*;

#[test]
fn issue_6_sushy_dmtf_rackmount1_uses_power_control_only() {
    if !sushy_or_skip("dmtf-public-rackmount1") {
        return;
    }
    // Chassis/1U/Power: PowerControl[0] MemberId "0", Name "System Input Power",
    // PowerConsumedWatts 344. EnvironmentMetrics (374) and PSU Bay1 InputPowerWatts (937.4)
    // disagree by design; PowerControl is first in the chain, so they are not read.
    check(
        "dmtf-public-rackmount1",
        &[("1U", PowerControl, "0", "System Input Power", 344.0)],
        &[("1U", Some(344.0))],
    );
}

#[test]
fn issue_6_sushy_dmtf_bladed_has_no_reading_not_zero() {
    if !sushy_or_skip("dmtf-public-bladed") {
        return;
    }
    // MultiBladeEncl/Power has PowerSupplies with LastPowerOutputWatts only (650, 635: DC
    // output) and no PowerControl; the blades link no power resource. Output watts are not
    // node input power, so there is no reading at all: no series, not a 0.
    let w = walk_case("dmtf-public-bladed");
    assert_eq!(w.chassis, 5);
    assert!(w.readings.is_empty(), "{:?}", w.readings);
    assert!(w.node_watts().is_empty());
}

#[test]
fn issue_6_sushy_dell_idrac9_r640_path_style_ids() {
    if !sushy_or_skip("dell-idrac9-r640") {
        return;
    }
    // Power.PowerControl[0]: @odata.id is a path (…/Power/PowerControl), MemberId
    // "PowerControl", PowerConsumedWatts 429. PSU PowerInputWatts 900 is a rating: unused.
    check(
        "dell-idrac9-r640",
        &[(
            "System.Embedded.1",
            PowerControl,
            "PowerControl",
            "System Power Control",
            429.0,
        )],
        &[("System.Embedded.1", Some(429.0))],
    );
}

#[test]
fn issue_6_sushy_dell_idrac9_psu_inputs() {
    if !sushy_or_skip("dell-idrac9-psu-inputs") {
        return;
    }
    // PowerControl[0] MemberId "0" = 338 W (PSU inputs 165.5 + 172.25 = 337.75 agree).
    check(
        "dell-idrac9-psu-inputs",
        &[(
            "System.Embedded.1",
            PowerControl,
            "0",
            "System Power Control",
            338.0,
        )],
        &[("System.Embedded.1", Some(338.0))],
    );
}

#[test]
fn issue_6_sushy_dell_idrac8_member_id_capital_d() {
    if !sushy_or_skip("dell-idrac8-m630-blade") {
        return;
    }
    // Old firmware writes `MemberID` ("PowerControl"); PowerConsumedWatts 121.
    check(
        "dell-idrac8-m630-blade",
        &[(
            "System.Embedded.1",
            PowerControl,
            "PowerControl",
            "System Power Control",
            121.0,
        )],
        &[("System.Embedded.1", Some(121.0))],
    );
}

#[test]
fn issue_6_sushy_hpe_ilo4_entry_without_ids() {
    if !sushy_or_skip("hpe-ilo4-bl460c-gen9") {
        return;
    }
    // `#Power.1.0.1.Power`, trailing-slash URIs; PowerControl[0] has no @odata.id, MemberId
    // or Name, so its id is its position "0" and its name empty; 73 W (the duplicated root
    // PowerConsumedWatts is not a second series).
    check(
        "hpe-ilo4-bl460c-gen9",
        &[("1", PowerControl, "0", "", 73.0)],
        &[("1", Some(73.0))],
    );
}

#[test]
fn issue_6_sushy_hpe_ilo5_broken_fragment_and_idless_chassis() {
    if !sushy_or_skip("hpe-ilo5-gen10") {
        return;
    }
    // Chassis/1 has no Id (id from its URI: "1"); PowerControl @odata.id
    // `…/Power#PowerControl/0` (no leading '/'), MemberId "0", no Name, 221 W.
    check(
        "hpe-ilo5-gen10",
        &[("1", PowerControl, "0", "", 221.0)],
        &[("1", Some(221.0))],
    );
}

#[test]
fn issue_6_sushy_supermicro_unversioned_type() {
    if !sushy_or_skip("supermicro-x10dff") {
        return;
    }
    // `#Power.Power`, MemberID "0", 176 W; PowerAvailableWatts 755 (Σ PSU output) unused.
    check(
        "supermicro-x10dff",
        &[("1", PowerControl, "0", "System Power Control", 176.0)],
        &[("1", Some(176.0))],
    );
}

#[test]
fn issue_6_sushy_lenovo_three_power_controls_not_summed() {
    if !sushy_or_skip("lenovo-xcc-sr670v2") {
        return;
    }
    // Three PowerControl entries, each its own series; node power is the Chassis-context
    // one (416), not 416 + 111 + 12.
    check(
        "lenovo-xcc-sr670v2",
        &[
            ("1", PowerControl, "0", "Server Power Control", 416.0),
            ("1", PowerControl, "1", "CPU Sub-system Power", 111.0),
            ("1", PowerControl, "2", "Memory Sub-system Power", 12.0),
        ],
        &[("1", Some(416.0))],
    );
}

#[test]
fn issue_6_sushy_lenovo_failed_psu_still_reads() {
    if !sushy_or_skip("lenovo-xcc-psu-critical") {
        return;
    }
    // PSU2 Critical with null watts does not matter: PowerControl is 380/184/8.
    check(
        "lenovo-xcc-psu-critical",
        &[
            ("1", PowerControl, "0", "Server Power Control", 380.0),
            ("1", PowerControl, "1", "CPU Sub-system Power", 184.0),
            ("1", PowerControl, "2", "Memory Sub-system Power", 8.0),
        ],
        &[("1", Some(380.0))],
    );
}

#[test]
fn issue_6_sushy_delta_powershelf_expanded_sensors() {
    if !sushy_or_skip("delta-powershelf") {
        return;
    }
    // No Power, no EnvironmentMetrics; PowerSubsystem's PSU Metrics links are 404 (a
    // partial error); the expanded Sensors collection has four chassis-context power sensors
    // (hotswap_input_power 3, total_power_in 1749, total_power_in_A 1749, total_power_out
    // 1674): the largest, first in order, is the shelf's input total.
    let w = walk_case("delta-powershelf");
    let got: Vec<_> = w
        .readings
        .iter()
        .map(|r| {
            (
                r.chassis_id.as_str(),
                r.kind,
                r.id.as_str(),
                r.name.as_str(),
                r.watts,
            )
        })
        .collect();
    assert_eq!(
        got,
        [(
            "PowerShelf_0",
            Sensor,
            "total_power_in",
            "total power in",
            1749.0
        )]
    );
    assert!(w
        .partial_errors
        .iter()
        .any(|e| e.kind == FetchErrorKind::NotFound && e.path.ends_with("/Metrics")));
    // Expanded members are not fetched again: root, chassis collection, chassis,
    // PowerSubsystem, PowerSupplies, 12 Metrics (404) and Sensors.
    assert!(w.requests < 25, "{} requests", w.requests);
}

#[test]
fn issue_6_sushy_google_sensors_only_is_unsupported() {
    if !sushy_or_skip("google-indus-sensors-only") {
        return;
    }
    // Only per-CPU power sensors (indus_cpu0/1_pwmon, 30 W, no Chassis context): no node
    // power. The walk succeeds and reports nothing.
    let w = walk_case("google-indus-sensors-only");
    assert_eq!(w.chassis, 1);
    assert!(w.readings.is_empty(), "{:?}", w.readings);
}

#[test]
fn issue_6_closed_port_is_a_connect_error() {
    let port = free_port();
    let client = Client::new(
        &bmc("b", &format!("http://127.0.0.1:{port}")),
        Duration::from_secs(2),
        1 << 20,
    )
    .unwrap();
    let e = block_on(walk(&client)).unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Connect, "{e}");
}

#[test]
fn issue_6_sushy_https_self_signed_needs_insecure() {
    if !sushy_or_skip("https") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (crt, key) = (dir.path().join("bmc.crt"), dir.path().join("bmc.key"));
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    let sushy = Sushy::start_with(
        "dell-idrac9-r640",
        &["-c", crt.to_str().unwrap(), "-k", key.to_str().unwrap()],
    );
    // Verified TLS refuses a certificate no CA signed: a TLS error, not a hang or a panic.
    let strict = Client::new(&bmc("b", &sushy.endpoint), Duration::from_secs(5), 1 << 20).unwrap();
    let e = block_on(walk(&strict)).unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Tls, "{e}");
    // `insecure: true` skips verification (development BMCs with self-signed certificates).
    let mut cfg = bmc("b", &sushy.endpoint);
    cfg.insecure = true;
    let lax = Client::new(&cfg, Duration::from_secs(5), 1 << 20).unwrap();
    let w = block_on(walk(&lax)).unwrap();
    assert_eq!(w.readings[0].watts, 429.0);
}

#[test]
fn issue_6_sushy_emulator_basic_auth_when_login_is_refused() {
    if !sushy_or_skip("sushy-emulator basic auth") {
        return;
    }
    // sushy-emulator has no session service and its auth layer answers 401 to everything
    // without basic auth, the login POST included: the client must fall back to basic auth
    // rather than report bad credentials.
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = std::process::Command::new("python3")
        .args([
            "-c",
            "import bcrypt; print(bcrypt.hashpw(b'test-password-do-not-log', bcrypt.gensalt(rounds=4)).decode())",
        ])
        .output()
        .expect("python3 with bcrypt (a sushy-tools dependency)");
    assert!(hash.status.success());
    std::fs::write(
        &htpasswd,
        format!("admin:{}", String::from_utf8_lossy(&hash.stdout).trim()),
    )
    .unwrap();
    let config = dir.path().join("emulator.conf");
    std::fs::write(
        &config,
        format!(
            "SUSHY_EMULATOR_AUTH_FILE = {:?}\n",
            htpasswd.display().to_string()
        ),
    )
    .unwrap();
    let emu = Sushy::emulator(&config);
    let client = Client::new(&bmc("b", &emu.endpoint), Duration::from_secs(5), 1 << 20).unwrap();
    let w = block_on(walk(&client)).unwrap();
    // The fake driver's one chassis links no power resource: a clean walk, no readings.
    assert_eq!(w.chassis, 1);
    assert!(w.readings.is_empty());
    assert!(!client.has_session());

    let mut wrong = bmc("b", &emu.endpoint);
    wrong.password = kepler_sources::redfish::Secret::new("not-the-password");
    let client = Client::new(&wrong, Duration::from_secs(5), 1 << 20).unwrap();
    let e = block_on(walk(&client)).unwrap_err();
    assert_eq!(e.kind, FetchErrorKind::Auth, "{e}");
}

#[test]
fn issue_19_sushy_power_shelf_with_null_context_reads_its_total() {
    if !sushy_or_skip("powershelf-null-context") {
        return;
    }
    // Chassis_Input_Power (2874 W, PhysicalContext null, named as the chassis input) stands
    // for the shelf; the six PSU inputs (summing to the same 2874 W) are its parts and are
    // not added; outputs and the fans' power are not inputs.
    check(
        "powershelf-null-context",
        &[(
            "PowerShelf_1",
            Sensor,
            "Chassis_Input_Power",
            "Chassis Input Power",
            2874.0,
        )],
        &[("PowerShelf_1", Some(2874.0))],
    );
}

#[test]
fn issue_19_sushy_power_shelf_with_psu_inputs_only_reads_the_largest() {
    if !sushy_or_skip("powershelf-psu-inputs-expand") {
        return;
    }
    // No total: the largest PSU input (612.5 W), never the sum (1815.75 W). The ServiceRoot
    // promises $expand; sushy-static answers the query with the plain collection, so each
    // sensor is fetched, and the walk still reads right.
    let w = walk_case("powershelf-psu-inputs-expand");
    assert_eq!(w.node_watts(), [("PowerShelf_0".to_string(), Some(612.5))]);
    assert_eq!(w.readings.len(), 1);
    assert_eq!(w.readings[0].id, "PSU1_Input_Power");
    assert_eq!(w.sensors_expanded, 0);
}

/// A BMC that serves a fixture tree and answers `Sensors?$expand=.($levels=1)` with every
/// member inline, as services that support `$expand` do.
fn expanding_bmc(case: &'static str) -> TestBmc {
    TestBmc::start(move |req| {
        let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
        let file = |p: &str| {
            let rel = p.trim_start_matches("/redfish/v1").trim_matches('/');
            std::fs::read_to_string(fixture(case).join(rel).join("index.json")).ok()
        };
        let Some(body) = file(path) else {
            return Reply::json(404, "{}");
        };
        if query.is_empty() {
            return Reply::json(200, &body);
        }
        if query != "$expand=.($levels=1)" || !path.ends_with("/Sensors") {
            return Reply::json(400, "{}");
        }
        let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let members: Vec<serde_json::Value> = v["Members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                serde_json::from_str(&file(m["@odata.id"].as_str().unwrap()).unwrap()).unwrap()
            })
            .collect();
        v["Members"] = serde_json::Value::Array(members);
        Reply::json(200, &v.to_string())
    })
}

#[test]
fn issue_19_sensors_are_read_expanded_where_the_service_can() {
    let server = expanding_bmc("powershelf-psu-inputs-expand");
    let client = Client::new(
        &bmc("b", &server.endpoint()),
        Duration::from_secs(5),
        8 << 20,
    )
    .unwrap();
    let w = block_on(walk(&client)).unwrap();
    assert_eq!(w.node_watts(), [("PowerShelf_0".to_string(), Some(612.5))]);
    assert_eq!(w.sensors_expanded, 1);
    let gets: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.path)
        .collect();
    assert!(
        gets.iter()
            .any(|p| p.ends_with("/Sensors?$expand=.($levels=1)")),
        "{gets:?}"
    );
    assert!(
        !gets.iter().any(|p| p.contains("/Sensors/")),
        "no sensor fetched one by one: {gets:?}"
    );
    // A service that does not promise $expand is never sent the query.
    let server = expanding_bmc("powershelf-null-context");
    let client = Client::new(
        &bmc("b", &server.endpoint()),
        Duration::from_secs(5),
        8 << 20,
    )
    .unwrap();
    let w = block_on(walk(&client)).unwrap();
    assert_eq!(w.node_watts(), [("PowerShelf_1".to_string(), Some(2874.0))]);
    assert!(server.requests().iter().all(|r| !r.path.contains('?')));
}
