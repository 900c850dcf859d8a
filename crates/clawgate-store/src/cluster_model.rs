//! Records of the cluster tables: the gateways sharing one database and the leases they hold.

/// One gateway on the database (`cluster_gateways`), as its heartbeat last wrote it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GatewayRecord {
    /// The gateway's boot id (new on every start).
    pub id: String,
    /// When it started (ms).
    pub started_at_ms: i64,
    /// Its last heartbeat (ms). Older than the lease ttl: the gateway is taken for dead.
    pub seen_at_ms: i64,
    /// Where it listens (`host:port`), for status output.
    pub listen_addr: String,
    /// Its clawgate version.
    pub version: String,
}

/// A named lease (`cluster_leases`): whoever holds it unexpired drives the thing it names.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LeaseRecord {
    /// What it guards (`channel:telegram:default`).
    pub name: String,
    /// The holding gateway's id.
    pub holder: String,
    /// Until when the holder may act without renewing (ms). From then on anyone may take it.
    pub expires_at_ms: i64,
    /// When the current holder first took it (renewals keep it).
    pub acquired_at_ms: i64,
}
