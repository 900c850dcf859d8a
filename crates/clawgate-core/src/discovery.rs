//! Discovery: the gateway advertised on the local network over mDNS / DNS-SD, as OpenClaw's
//! Bonjour plugin does it, so its apps and `openclaw gateway discover` find clawgate.
//!
//! What is advertised follows upstream (`extensions/bonjour`, `server-discovery-runtime`): one
//! `_openclaw-gw._tcp.local.` instance named `<machine> (OpenClaw)` on the gateway's port,
//! with the TXT keys `role=gateway`, `gatewayPort`, `lanHost=<host>.local`, `displayName`,
//! `transport=gateway`, `gatewayTls=1` when TLS is on, `gatewayDirectReachable=1` when the
//! gateway listens off loopback, and in `full` mode also `sshPort` (`OPENCLAW_SSH_PORT`,
//! default 22), `cliPath` (`OPENCLAW_CLI_PATH`, when set) and `tailnetDns`
//! (`OPENCLAW_TAILNET_DNS`, when set). `discovery.mdns.mode` decides: unset is upstream's
//! platform default (on only on macOS), `OPENCLAW_DISABLE_BONJOUR` turns it off.
//!
//! Bounded by construction: one responder (the `mdns-sd` daemon, one thread) announcing one
//! service; nothing is browsed or queued. At shutdown the service is unregistered — a goodbye
//! packet, so browsers drop it at once — and the daemon stopped, each with a deadline.

use std::collections::BTreeMap;
use std::time::Duration;

use clawgate_config::MdnsMode;
use mdns_sd::{ServiceDaemon, ServiceInfo, UnregisterStatus};
use tokio_util::sync::CancellationToken;

use crate::error::CoreError;

/// The DNS-SD service type (upstream's `GATEWAY_SERVICE_TYPE` in the `local.` domain).
pub const SERVICE_TYPE: &str = "_openclaw-gw._tcp.local.";
/// How long the goodbye and the daemon's stop may take at shutdown.
const STOP_DEADLINE: Duration = Duration::from_secs(2);
/// The longest DNS label.
const MAX_LABEL_BYTES: usize = 63;

/// What the process environment says about discovery (read once by the composition root).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveryEnv {
    /// The machine's host name (`/proc/sys/kernel/hostname`).
    pub hostname: String,
    /// `OPENCLAW_MDNS_HOSTNAME`: the host label to advertise instead.
    pub mdns_hostname: Option<String>,
    /// `OPENCLAW_DISABLE_BONJOUR`: a truthy value turns advertising off.
    pub disable_bonjour: Option<String>,
    /// `OPENCLAW_SSH_PORT` (full mode).
    pub ssh_port: Option<String>,
    /// `OPENCLAW_CLI_PATH` (full mode).
    pub cli_path: Option<String>,
    /// `OPENCLAW_TAILNET_DNS` (full mode).
    pub tailnet_dns: Option<String>,
}

impl DiscoveryEnv {
    /// Reads the environment of this process.
    pub fn from_process() -> Self {
        let var = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        Self {
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .or_else(|| var("HOSTNAME"))
                .unwrap_or_default(),
            mdns_hostname: var("OPENCLAW_MDNS_HOSTNAME"),
            disable_bonjour: var("OPENCLAW_DISABLE_BONJOUR"),
            ssh_port: var("OPENCLAW_SSH_PORT"),
            cli_path: var("OPENCLAW_CLI_PATH"),
            tailnet_dns: var("OPENCLAW_TAILNET_DNS"),
        }
    }
}

/// The gateway facts an advertisement carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayFacts {
    /// The port it listens on.
    pub port: u16,
    /// Whether it serves `wss://`.
    pub tls: bool,
    /// Whether it listens off loopback (upstream's `gatewayDirectReachable`).
    pub direct_reachable: bool,
}

/// One DNS-SD instance to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    /// The instance name, e.g. `desk (OpenClaw)`.
    pub instance: String,
    /// The host label (`<label>.local.` is the SRV target).
    pub host_label: String,
    /// The SRV port.
    pub port: u16,
    /// The TXT record.
    pub txt: BTreeMap<String, String>,
}

impl Advertisement {
    /// `<instance>._openclaw-gw._tcp.local.`
    pub fn fullname(&self) -> String {
        format!("{}.{SERVICE_TYPE}", self.instance)
    }
}

/// What to announce for `mode`, or `None` when nothing is (mode off, or
/// `OPENCLAW_DISABLE_BONJOUR`). Pure: the facts come in, the record goes out.
pub fn advertisement(mode: MdnsMode, facts: &GatewayFacts, env: &DiscoveryEnv) -> Option<Advertisement> {
    if mode == MdnsMode::Off || env.disable_bonjour.as_deref().is_some_and(truthy) {
        return None;
    }
    let full = mode == MdnsMode::Full;
    let host_label = host_label(env.mdns_hostname.as_deref().unwrap_or(&env.hostname));
    let machine = env.hostname.trim().trim_end_matches(".local").trim();
    let machine = if machine.is_empty() { "openclaw" } else { machine };
    let instance = truncate_label(&instance_name(machine));
    let display_name = instance
        .strip_suffix(" (OpenClaw)")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(&instance)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut txt = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        txt.insert(k.to_owned(), v);
    };
    put("role", "gateway".into());
    put("gatewayPort", facts.port.to_string());
    put("lanHost", format!("{host_label}.local"));
    put("displayName", display_name);
    put("transport", "gateway".into());
    if facts.tls {
        put("gatewayTls", "1".into());
    }
    if facts.direct_reachable {
        put("gatewayDirectReachable", "1".into());
    }
    if full {
        let ssh = env.ssh_port.as_deref().and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0).unwrap_or(22);
        put("sshPort", ssh.to_string());
        if let Some(cli) = &env.cli_path {
            put("cliPath", cli.clone());
        }
        if let Some(dns) = &env.tailnet_dns {
            put("tailnetDns", dns.trim_end_matches('.').to_owned());
        }
    }
    Some(Advertisement { instance, host_label, port: facts.port, txt })
}

/// Upstream's `formatBonjourInstanceName`: a name that does not say OpenClaw gets
/// ` (OpenClaw)` appended, so the apps list it as a gateway.
fn instance_name(machine: &str) -> String {
    if machine.to_ascii_lowercase().contains("openclaw") { machine.to_owned() } else { format!("{machine} (OpenClaw)") }
}

/// The first DNS label of a host name, or `openclaw` when it is not a valid label.
fn host_label(name: &str) -> String {
    let first = name.trim().trim_end_matches(".local").split('.').next().unwrap_or_default().trim();
    let valid = !first.is_empty()
        && first.len() <= MAX_LABEL_BYTES
        && first.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !first.starts_with('-')
        && !first.ends_with('-');
    if valid { first.to_owned() } else { "openclaw".to_owned() }
}

/// At most 63 bytes, cut on a character boundary.
fn truncate_label(name: &str) -> String {
    if name.len() <= MAX_LABEL_BYTES {
        return name.to_owned();
    }
    let mut end = MAX_LABEL_BYTES;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let cut = name[..end].trim_end_matches('-').trim();
    if cut.is_empty() { "OpenClaw".to_owned() } else { cut.to_owned() }
}

fn truthy(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

/// A running advertisement. Dropping it without [`Advertiser::stop`] leaves the daemon to end
/// with the process (no goodbye is sent).
pub struct Advertiser {
    daemon: ServiceDaemon,
    fullname: String,
}

impl std::fmt::Debug for Advertiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Advertiser").field("fullname", &self.fullname).finish_non_exhaustive()
    }
}

impl Advertiser {
    /// Starts the responder and announces `ad` on every multicast-capable interface, with
    /// their addresses kept current by the responder.
    pub fn start(ad: &Advertisement) -> Result<Self, CoreError> {
        let daemon = ServiceDaemon::new().map_err(|e| CoreError::internal(format!("mDNS responder: {e}")))?;
        let host = format!("{}.local.", ad.host_label);
        let txt: Vec<(&str, &str)> = ad.txt.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let info = ServiceInfo::new(SERVICE_TYPE, &ad.instance, &host, "", ad.port, &txt[..])
            .map_err(|e| CoreError::internal(format!("mDNS service record: {e}")))?
            .enable_addr_auto();
        let fullname = info.get_fullname().to_owned();
        if let Err(e) = daemon.register(info) {
            let _ = daemon.shutdown();
            return Err(CoreError::internal(format!("mDNS register: {e}")));
        }
        Ok(Self { daemon, fullname })
    }

    /// The announced instance's full name.
    pub fn fullname(&self) -> &str {
        &self.fullname
    }

    /// Sends the goodbye (the record with TTL 0) and stops the responder, each bounded by a
    /// deadline.
    pub async fn stop(self) {
        match self.daemon.unregister(&self.fullname) {
            Ok(rx) => match tokio::time::timeout(STOP_DEADLINE, rx.recv_async()).await {
                Ok(Ok(UnregisterStatus::OK)) => {
                    tracing::info!(service = %self.fullname, "mDNS advertisement withdrawn")
                }
                Ok(other) => tracing::warn!(service = %self.fullname, status = ?other, "mDNS unregister"),
                Err(_) => tracing::warn!(service = %self.fullname, "mDNS goodbye not confirmed in time"),
            },
            Err(e) => tracing::warn!(error = %e, "mDNS unregister failed"),
        }
        match self.daemon.shutdown() {
            Ok(rx) => {
                let _ = tokio::time::timeout(STOP_DEADLINE, rx.recv_async()).await;
            }
            Err(e) => tracing::warn!(error = %e, "mDNS responder shutdown failed"),
        }
    }
}

/// Advertises `ad` until `shutdown`, then withdraws it. A responder that cannot start (no
/// multicast interface, port 5353 refused) is logged and the gateway goes on without it.
pub async fn run(ad: Advertisement, shutdown: CancellationToken) {
    let advertiser = match Advertiser::start(&ad) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e.log_chain(), "mDNS discovery not started; the gateway runs without it");
            return;
        }
    };
    tracing::info!(service = %advertiser.fullname(), port = ad.port, host = %ad.host_label, "advertising over mDNS");
    shutdown.cancelled().await;
    advertiser.stop().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(host: &str) -> DiscoveryEnv {
        DiscoveryEnv { hostname: host.into(), ..DiscoveryEnv::default() }
    }

    fn facts() -> GatewayFacts {
        GatewayFacts { port: 18789, tls: false, direct_reachable: false }
    }

    #[test]
    fn minimal_mode_announces_upstreams_keys_and_nothing_more() {
        let ad = advertisement(MdnsMode::Minimal, &facts(), &env("desk.example.org")).expect("on");
        assert_eq!(ad.instance, "desk.example.org (OpenClaw)");
        assert_eq!(ad.fullname(), "desk.example.org (OpenClaw)._openclaw-gw._tcp.local.");
        assert_eq!(ad.host_label, "desk");
        assert_eq!(ad.port, 18789);
        let keys: Vec<&str> = ad.txt.keys().map(String::as_str).collect();
        assert_eq!(keys, ["displayName", "gatewayPort", "lanHost", "role", "transport"]);
        assert_eq!(ad.txt["role"], "gateway");
        assert_eq!(ad.txt["gatewayPort"], "18789");
        assert_eq!(ad.txt["lanHost"], "desk.local");
        assert_eq!(ad.txt["displayName"], "desk.example.org");
        assert_eq!(ad.txt["transport"], "gateway");
    }

    #[test]
    fn tls_reachability_and_full_mode_add_their_keys() {
        let mut e = env("desk");
        e.ssh_port = Some("2222".into());
        e.cli_path = Some("/usr/local/bin/openclaw".into());
        e.tailnet_dns = Some("desk.tail.ts.net.".into());
        let f = GatewayFacts { port: 443, tls: true, direct_reachable: true };
        let ad = advertisement(MdnsMode::Full, &f, &e).expect("on");
        assert_eq!(ad.txt["gatewayTls"], "1");
        assert_eq!(ad.txt["gatewayDirectReachable"], "1");
        assert_eq!(ad.txt["sshPort"], "2222");
        assert_eq!(ad.txt["cliPath"], "/usr/local/bin/openclaw");
        assert_eq!(ad.txt["tailnetDns"], "desk.tail.ts.net");
        // Minimal mode leaves the full-mode keys out even when the environment has them.
        let ad = advertisement(MdnsMode::Minimal, &f, &e).expect("on");
        assert!(!ad.txt.contains_key("sshPort") && !ad.txt.contains_key("cliPath"));
        let ad = advertisement(MdnsMode::Full, &f, &env("desk")).expect("on");
        assert_eq!(ad.txt["sshPort"], "22");
    }

    #[test]
    fn off_mode_and_the_disable_switch_announce_nothing() {
        assert_eq!(advertisement(MdnsMode::Off, &facts(), &env("desk")), None);
        let mut e = env("desk");
        e.disable_bonjour = Some("1".into());
        assert_eq!(advertisement(MdnsMode::Full, &facts(), &e), None);
        e.disable_bonjour = Some("0".into());
        assert!(advertisement(MdnsMode::Full, &facts(), &e).is_some());
    }

    #[test]
    fn names_follow_upstreams_rules() {
        let ad = advertisement(MdnsMode::Minimal, &facts(), &env("my-openclaw-box")).expect("on");
        assert_eq!(ad.instance, "my-openclaw-box", "a name saying OpenClaw is kept as it is");
        assert_eq!(ad.txt["displayName"], "my-openclaw-box");
        let ad = advertisement(MdnsMode::Minimal, &facts(), &env("")).expect("on");
        assert_eq!((ad.instance.as_str(), ad.host_label.as_str()), ("openclaw", "openclaw"));
        let ad = advertisement(MdnsMode::Minimal, &facts(), &env("bad_host!")).expect("on");
        assert_eq!(ad.host_label, "openclaw");
        let mut e = env("desk");
        e.mdns_hostname = Some("gw-1.local".into());
        assert_eq!(advertisement(MdnsMode::Minimal, &facts(), &e).expect("on").host_label, "gw-1");
        let long = "é".repeat(40);
        let ad = advertisement(MdnsMode::Minimal, &facts(), &env(&long)).expect("on");
        assert!(ad.instance.len() <= 63 && ad.instance.starts_with('é'), "{}", ad.instance);
    }
}
