//! The rest of the Control UI's start-up methods. Each one the UI calls for a feature clawgate
//! does not have (Control UI plugins, session boards, projects, GitHub publishing, session
//! members, pull requests, user preferences, session groups, discussions, mentions, external
//! session catalogs) answers the schema's honest empty state rather than an error the UI would
//! show as a toast; those that name a session check that it is one this gateway can route.
//! `system.info` reports the real host and process.

use clawgate_protocol::methods::ui_startup::*;
use clawgate_protocol::scopes;

use crate::agent::AgentService;
use crate::dispatch::CallContext;
use crate::error::CoreError;
use crate::health::GatewayInfo;
use crate::methods::chat::resolve_session_key;

/// A session key the UI sent: not blank, and routable (a known agent).
fn check_session(agents: &AgentService, method: &str, key: &str, agent_id: Option<&str>) -> Result<(), CoreError> {
    if key.trim().is_empty() {
        return Err(CoreError::invalid(format!("invalid {method} params: sessionKey must not be empty")));
    }
    resolve_session_key(agents, key, agent_id).map(|_| ())
}

/// `plugins.controlUi.list` → no plugins: clawgate hosts no Control UI plugins.
pub async fn plugins_control_ui_list(_: NoParams) -> Result<PluginsControlUiListResult, CoreError> {
    // The revision only has to change when the list does; this one never changes.
    Ok(PluginsControlUiListResult { revision: "none".into(), plugins: Vec::new(), diagnostics: Vec::new() })
}

/// `plugins.list` → none, and no installing: clawgate's channels and tools are built in.
pub async fn plugins_list(_: NoParams) -> Result<PluginsListResult, CoreError> {
    Ok(PluginsListResult { plugins: Vec::new(), diagnostics: Vec::new(), mutation_allowed: false })
}

/// `plugins.catalog.browse` → no items: clawgate installs no plugins.
pub async fn plugins_catalog_browse(p: PluginsCatalogBrowseParams) -> Result<PluginsCatalogBrowseResult, CoreError> {
    if p.page_size.is_some_and(|n| !(1..=100).contains(&n)) {
        return Err(CoreError::invalid("invalid plugins.catalog.browse params: pageSize must be between 1 and 100"));
    }
    if p.query.as_ref().is_some_and(|q| q.chars().count() > 200) {
        return Err(CoreError::invalid("invalid plugins.catalog.browse params: query is longer than 200 characters"));
    }
    Ok(PluginsCatalogBrowseResult { items: Vec::new() })
}

/// `diagnostics.lanes` → each session lane with runs in it: one running, the rest queued.
pub async fn diagnostics_lanes(agents: &AgentService, _: NoParams) -> Result<DiagnosticsLanesResult, CoreError> {
    Ok(DiagnosticsLanesResult { lanes: agents.lane_depths().into_iter().map(|(key, n)| lane_row(&key, n)).collect() })
}

/// A session lane holding `depth` runs (queued or running; a lane runs one at a time).
fn lane_row(session_key: &str, depth: usize) -> LaneRow {
    LaneRow {
        lane: format!("session:{session_key}"),
        active_count: depth.min(1),
        max_concurrent: 1,
        queued_count: depth.saturating_sub(1),
    }
}

/// `board.get {sessionKey, agentId?}` → an empty board at revision 0: clawgate keeps no boards.
pub async fn board_get(agents: &AgentService, p: SessionRefParams) -> Result<BoardSnapshot, CoreError> {
    check_session(agents, "board.get", &p.session_key, p.agent_id.as_deref())?;
    Ok(BoardSnapshot { session_key: p.session_key, revision: 0, tabs: Vec::new(), widgets: Vec::new() })
}

/// `projects.list` → none: clawgate's agents have no workspace checkouts.
pub async fn projects_list(_: ProjectsListParams) -> Result<ProjectsListResult, CoreError> {
    Ok(ProjectsListResult { projects: Vec::new(), recents: Vec::new() })
}

/// `sessions.viewers.set {sessionKeys}` → the keys echoed: a display hint clawgate needs
/// nothing from (it sends the same events whoever watches).
pub async fn sessions_viewers_set(p: SessionsViewersSetParams) -> Result<SessionsViewersSetResult, CoreError> {
    if p.session_keys.len() > SessionsViewersSetParams::MAX {
        return Err(CoreError::invalid(format!(
            "invalid sessions.viewers.set params: at most {} sessionKeys",
            SessionsViewersSetParams::MAX
        )));
    }
    if p.session_keys.iter().any(|k| k.trim().is_empty()) {
        return Err(CoreError::invalid("invalid sessions.viewers.set params: a sessionKey is empty"));
    }
    Ok(SessionsViewersSetResult { session_keys: p.session_keys })
}

/// `sessions.github.options {sessionKey}` → every option `null`: clawgate does not publish to
/// GitHub.
pub async fn sessions_github_options(
    agents: &AgentService,
    p: SessionsGithubOptionsParams,
) -> Result<SessionsGithubOptionsResult, CoreError> {
    check_session(agents, "sessions.github.options", &p.session_key, p.agent_id.as_deref())?;
    Ok(SessionsGithubOptionsResult { personal: None, shared: None, pending_personal: None, latest_shared: None })
}

/// `session.members.listEvidence {sessionKey}` → no members or identities (sessions are not
/// shared between user profiles); the caller's role follows its scopes.
pub async fn session_members_list_evidence(
    agents: &AgentService,
    ctx: &CallContext,
    p: SessionRefParams,
) -> Result<SessionMembersListEvidenceResult, CoreError> {
    check_session(agents, "session.members.listEvidence", &p.session_key, p.agent_id.as_deref())?;
    let role = role_for(|s| ctx.client.has_scope(s));
    Ok(SessionMembersListEvidenceResult {
        session_key: p.session_key,
        members: Vec::new(),
        identities: Vec::new(),
        role,
        allowed_visibilities: Vec::new(),
    })
}

/// The session role an operator's scopes amount to.
fn role_for(has: impl Fn(&str) -> bool) -> SessionRole {
    if has(scopes::ADMIN) {
        SessionRole::Admin
    } else if has(scopes::WRITE) {
        SessionRole::Member
    } else {
        SessionRole::Viewer
    }
}

/// `controlUi.sessionPullRequests.subscribe {sessionKeys}` → `{subscribed: false}`: clawgate
/// sessions open no pull requests.
pub async fn session_pull_requests_subscribe(
    p: SessionPullRequestsSubscribeParams,
) -> Result<SessionPullRequestsSubscribeResult, CoreError> {
    if p.session_keys.iter().any(|k| k.trim().is_empty()) {
        return Err(CoreError::invalid(
            "invalid controlUi.sessionPullRequests.subscribe params: a sessionKey is empty",
        ));
    }
    Ok(SessionPullRequestsSubscribeResult { subscribed: false })
}

/// The most preference keys one call may name (upstream's `maxItems`/`maxProperties`).
const MAX_PREF_KEYS: usize = 32;

/// `users.prefs.get {keys?}` → `no_durable_identity`: clawgate has no user profiles to keep
/// preferences under, so the UI keeps them in the browser.
pub async fn users_prefs_get(p: UsersPrefsGetParams) -> Result<UsersPrefsResult, CoreError> {
    if p.keys.as_ref().is_some_and(|k| k.len() > MAX_PREF_KEYS || k.iter().any(|k| k.is_empty() || k.len() > 256)) {
        return Err(CoreError::invalid(format!(
            "invalid users.prefs.get params: at most {MAX_PREF_KEYS} keys of 1 to 256 characters"
        )));
    }
    Ok(UsersPrefsResult::NoDurableIdentity)
}

/// `users.prefs.set {entries}` → `no_durable_identity`, nothing stored (see [`users_prefs_get`]).
pub async fn users_prefs_set(p: UsersPrefsSetParams) -> Result<UsersPrefsResult, CoreError> {
    if p.entries.len() > MAX_PREF_KEYS || p.expected_entries.as_ref().is_some_and(|e| e.len() > MAX_PREF_KEYS) {
        return Err(CoreError::invalid(format!("invalid users.prefs.set params: at most {MAX_PREF_KEYS} entries")));
    }
    Ok(UsersPrefsResult::NoDurableIdentity)
}

/// `sessions.groups.list` → no groups: clawgate does not group sessions.
pub async fn sessions_groups_list(_: NoParams) -> Result<SessionsGroupsListResult, CoreError> {
    Ok(SessionsGroupsListResult { groups: Vec::new(), section_order: Vec::new() })
}

/// `sessions.groups.defaults` → none.
pub async fn sessions_groups_defaults(_: NoParams) -> Result<SessionsGroupsDefaultsResult, CoreError> {
    Ok(SessionsGroupsDefaultsResult { defaults: Vec::new() })
}

/// `session.discussion.info {sessionKey}` → `{state: "none"}`.
pub async fn session_discussion_info(
    agents: &AgentService,
    p: SessionRefParams,
) -> Result<SessionDiscussionInfoResult, CoreError> {
    check_session(agents, "session.discussion.info", &p.session_key, p.agent_id.as_deref())?;
    Ok(SessionDiscussionInfoResult { state: DiscussionState::None })
}

/// `mentions.list` → none, under this boot's id.
pub async fn mentions_list(info: &GatewayInfo, _: NoParams) -> Result<MentionsListResult, CoreError> {
    Ok(MentionsListResult { gateway_instance_id: info.boot_id.clone(), revision: 0, items: Vec::new() })
}

/// `sessions.catalog.list` → no catalogs: clawgate reads no other agent tool's sessions.
pub async fn sessions_catalog_list(p: SessionsCatalogListParams) -> Result<SessionsCatalogListResult, CoreError> {
    if p.limit_per_host == Some(0) {
        return Err(CoreError::invalid("invalid sessions.catalog.list params: limitPerHost must be at least 1"));
    }
    if p.progress_id.as_ref().is_some_and(|id| id.is_empty() || id.len() > 128) {
        return Err(CoreError::invalid("invalid sessions.catalog.list params: progressId must be 1 to 128 characters"));
    }
    Ok(SessionsCatalogListResult { catalogs: Vec::new() })
}

/// `system.info` → the host and this process, read from the OS each call.
pub async fn system_info(info: &GatewayInfo, _: NoParams) -> Result<SystemInfoResult, CoreError> {
    Ok(host::describe(info))
}

/// What the OS tells about the host. Linux reads `/proc`; elsewhere the fields the OS does not
/// tell this way are left out (optional ones) or zero.
mod host {
    use super::*;

    pub(super) fn describe(info: &GatewayInfo) -> SystemInfoResult {
        let hostname = read_trimmed("/proc/sys/kernel/hostname")
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".into());
        let release = read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default();
        let platform = node_platform(std::env::consts::OS).to_owned();
        let os_label = format!("{} {release}", os_name(std::env::consts::OS)).trim_end().to_owned();
        let (memory_total_bytes, memory_free_bytes) =
            std::fs::read_to_string("/proc/meminfo").map(|t| meminfo(&t)).unwrap_or((0, 0));
        SystemInfoResult {
            machine_name: hostname.clone(),
            hostname,
            platform,
            release,
            arch: node_arch(std::env::consts::ARCH).to_owned(),
            os_label,
            node_version: format!("clawgate {} (Rust)", info.version),
            pid: std::process::id(),
            process_instance_id: info.boot_id.clone(),
            uptime_ms: u64::try_from(info.uptime().as_millis()).unwrap_or(u64::MAX),
            cpu_count: std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
            cpu_model: std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| cpu_model(&t)),
            load_average: std::fs::read_to_string("/proc/loadavg").ok().and_then(|t| load_average(&t)),
            memory_total_bytes,
            memory_free_bytes,
        }
    }

    fn read_trimmed(path: &str) -> Option<String> {
        std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
    }

    /// Node's `process.platform` for Rust's `std::env::consts::OS`.
    pub(super) fn node_platform(os: &str) -> &str {
        match os {
            "macos" => "darwin",
            "windows" => "win32",
            other => other,
        }
    }

    fn os_name(os: &str) -> &str {
        match os {
            "linux" => "Linux",
            "macos" => "macOS",
            "windows" => "Windows",
            "freebsd" => "FreeBSD",
            other => other,
        }
    }

    /// Node's `process.arch` for Rust's `std::env::consts::ARCH`.
    pub(super) fn node_arch(arch: &str) -> &str {
        match arch {
            "x86_64" => "x64",
            "aarch64" => "arm64",
            "x86" => "ia32",
            "powerpc64" => "ppc64",
            other => other,
        }
    }

    /// `(MemTotal, MemAvailable)` in bytes from `/proc/meminfo` (kB lines).
    pub(super) fn meminfo(text: &str) -> (u64, u64) {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map_or(0, |kb| kb.saturating_mul(1024))
        };
        (field("MemTotal"), field("MemAvailable"))
    }

    /// The first `model name` line of `/proc/cpuinfo`.
    pub(super) fn cpu_model(text: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_owned()))
            .filter(|m| !m.is_empty())
    }

    /// The three load averages of `/proc/loadavg`.
    pub(super) fn load_average(text: &str) -> Option<[f64; 3]> {
        let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
        Some([it.next()??, it.next()??, it.next()??])
    }
}

#[cfg(test)]
mod tests {
    use super::host::*;
    use super::*;

    #[test]
    fn proc_files_are_read_as_the_kernel_writes_them() {
        let mem = "MemTotal:        8048576 kB\nMemFree:          123456 kB\nMemAvailable:    4024288 kB\n";
        assert_eq!(meminfo(mem), (8_048_576 * 1024, 4_024_288 * 1024));
        assert_eq!(meminfo("garbage"), (0, 0));
        let cpu = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(cpu_model(cpu).as_deref(), Some("Intel(R) Xeon(R) CPU @ 2.20GHz"));
        assert_eq!(cpu_model("processor: 0\n"), None);
        assert_eq!(load_average("0.52 0.58 0.59 1/467 12345\n"), Some([0.52, 0.58, 0.59]));
        assert_eq!(load_average("0.52 x"), None);
    }

    #[test]
    fn platform_and_arch_use_nodes_names() {
        assert_eq!((node_platform("macos"), node_platform("linux")), ("darwin", "linux"));
        assert_eq!((node_arch("x86_64"), node_arch("aarch64")), ("x64", "arm64"));
    }

    #[test]
    fn a_lane_runs_one_and_queues_the_rest() {
        let row = lane_row("agent:main:main", 3);
        assert_eq!((row.active_count, row.queued_count, row.max_concurrent), (1, 2, 1));
        assert_eq!(row.lane, "session:agent:main:main");
    }

    #[test]
    fn the_role_follows_the_strongest_scope() {
        assert_eq!(role_for(|s| s == scopes::ADMIN || s == scopes::READ), SessionRole::Admin);
        assert_eq!(role_for(|s| s == scopes::WRITE), SessionRole::Member);
        assert_eq!(role_for(|s| s == scopes::READ), SessionRole::Viewer);
    }

    #[tokio::test]
    async fn limits_are_enforced() {
        let keys = |n: usize| SessionsViewersSetParams { session_keys: (0..n).map(|i| format!("k{i}")).collect() };
        assert!(sessions_viewers_set(keys(65)).await.is_err());
        assert_eq!(sessions_viewers_set(keys(2)).await.ok().map(|r| r.session_keys.len()), Some(2));
        let prefs = |n: usize| UsersPrefsGetParams { keys: Some((0..n).map(|i| format!("ui.k{i}")).collect()) };
        assert!(users_prefs_get(prefs(33)).await.is_err());
        assert_eq!(users_prefs_get(prefs(5)).await.ok(), Some(UsersPrefsResult::NoDurableIdentity));
        let catalog = SessionsCatalogListParams { limit_per_host: Some(0), ..Default::default() };
        assert!(sessions_catalog_list(catalog).await.is_err());
    }
}
