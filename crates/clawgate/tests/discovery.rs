//! Discovery end to end: the real binary with `discovery.mdns.mode` set advertises
//! `_openclaw-gw._tcp` with upstream's TXT keys, a DNS-SD browser on the same machine resolves
//! it to the gateway's port, and a graceful stop withdraws it (the goodbye reaches the browser).
//!
//! Why an in-process browser and not `openclaw gateway discover --json`: on Linux that command
//! does not browse by itself, it runs `avahi-browse -rt _openclaw-gw._tcp`, which needs the
//! Avahi daemon and D-Bus running — neither runs on CI's machines (nor in most containers), so
//! the real CLI would find nothing whatever clawgate announced. The browser here is `mdns-sd`'s,
//! speaking plain multicast DNS on the machine's network interfaces, as Avahi would.
//!
//! Multicast must work on at least one interface that is up (the loopback interface usually has
//! no MULTICAST flag); on a machine without one the test is skipped with the reason printed,
//! unless `CLAWGATE_REQUIRE_MDNS=1`.

use std::time::Duration;

use clawgate_testkit::TestGateway;
use mdns_sd::{ServiceDaemon, ServiceEvent};

const BIN: &str = env!("CARGO_BIN_EXE_clawgate");
const SERVICE_TYPE: &str = "_openclaw-gw._tcp.local.";
/// Bound for each wait on the network.
const WAIT: Duration = Duration::from_secs(20);

/// Interfaces that are up and can multicast (IFF_UP 0x1, IFF_MULTICAST 0x1000), from sysfs.
fn multicast_interfaces() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else { return Vec::new() };
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            let flags = std::fs::read_to_string(e.path().join("flags")).ok()?;
            let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).ok()?;
            (flags & 0x1 != 0 && flags & 0x1000 != 0).then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

/// Waits for the next browse event matching `pick`.
async fn next_event<T>(
    rx: &mdns_sd::Receiver<ServiceEvent>,
    what: &str,
    mut pick: impl FnMut(ServiceEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rx.recv_async()).await {
            Ok(Ok(event)) => {
                if let Some(v) = pick(event) {
                    return v;
                }
            }
            Ok(Err(e)) => panic!("the browser stopped while waiting for {what}: {e}"),
            Err(_) => panic!("no {what} within {WAIT:?}"),
        }
    }
}

#[tokio::test]
async fn the_gateway_is_advertised_over_mdns_with_upstreams_txt_keys_and_withdrawn_at_stop() {
    let interfaces = multicast_interfaces();
    if interfaces.is_empty() {
        let reason = "no network interface here is up with multicast, so no mDNS packet can travel";
        if std::env::var("CLAWGATE_REQUIRE_MDNS").is_ok_and(|v| v == "1") {
            panic!("{reason}");
        }
        eprintln!("\n*** SKIPPED mDNS discovery test: {reason} (CLAWGATE_REQUIRE_MDNS=1 makes this a failure)\n");
        return;
    }
    let browser = ServiceDaemon::new().expect("mDNS browser");
    let events = browser.browse(SERVICE_TYPE).expect("browse");

    let mut gw = TestGateway::builder(BIN)
        .config("{discovery: {mdns: {mode: \"minimal\"}}}")
        .env("OPENCLAW_MDNS_HOSTNAME", "clawgate-discovery-test")
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting clawgate: {e:#}"));
    let port = gw.port();

    // Other gateways on this network may answer too: the one wanted is on this port.
    let found = next_event(&events, "the gateway's resolved service", |e| match e {
        ServiceEvent::ServiceResolved(s) if s.get_port() == port => Some(s),
        _ => None,
    })
    .await;
    let txt = |k: &str| found.get_property_val_str(k).map(str::to_owned);
    assert!(found.get_fullname().ends_with(&format!(".{SERVICE_TYPE}")), "{}", found.get_fullname());
    assert!(found.get_fullname().contains("(OpenClaw)") || found.get_fullname().to_lowercase().contains("openclaw"));
    assert_eq!(found.get_hostname(), "clawgate-discovery-test.local.");
    assert_eq!(txt("role").as_deref(), Some("gateway"));
    assert_eq!(txt("transport").as_deref(), Some("gateway"));
    assert_eq!(txt("gatewayPort"), Some(port.to_string()));
    assert_eq!(txt("lanHost").as_deref(), Some("clawgate-discovery-test.local"));
    assert!(txt("displayName").is_some_and(|n| !n.is_empty()));
    // Loopback-only, plain ws://, minimal mode: none of the other keys.
    for absent in ["gatewayTls", "gatewayDirectReachable", "sshPort", "cliPath", "tailnetDns"] {
        assert_eq!(txt(absent), None, "{absent} in minimal mode on loopback");
    }
    assert!(!found.get_addresses().is_empty(), "addresses announced with the service");
    let fullname = found.get_fullname().to_owned();

    // A graceful stop says goodbye: the browser drops the service at once, not when its TTL
    // runs out.
    gw.terminate().await.expect("graceful stop");
    let removed = next_event(&events, "the service's removal", |e| match e {
        ServiceEvent::ServiceRemoved(_, name) if name == fullname => Some(name),
        _ => None,
    })
    .await;
    assert_eq!(removed, fullname);
    let _ = browser.shutdown();
}
