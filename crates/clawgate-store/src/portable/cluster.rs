//! [`ClusterStore`](crate::ClusterStore) on the `cluster_gateways` and `cluster_leases` tables,
//! for both backends (`sqlite/cluster.rs` and `postgres/cluster.rs` expand it).

/// Implements `ClusterStore` for `$store` (a `SqliteStore` or a `PgStore`).
macro_rules! cluster_store {
    ($store:ty) => {
        impl $crate::ClusterStore for $store {
            async fn upsert_gateway(&self, g: &$crate::GatewayRecord) -> $crate::Result<()> {
                let written = sqlx::query(
                    "INSERT INTO cluster_gateways (id, started_at_ms, seen_at_ms, listen_addr, version) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (id) DO UPDATE SET seen_at_ms = excluded.seen_at_ms, \
                     listen_addr = excluded.listen_addr, version = excluded.version",
                )
                .bind(&g.id)
                .bind(g.started_at_ms)
                .bind(g.seen_at_ms)
                .bind(&g.listen_addr)
                .bind(&g.version)
                .execute(self.pool())
                .await
                .map(|_| ())
                .map_err($crate::StoreError::from);
                self.observed(written)
            }

            async fn list_gateways(&self) -> $crate::Result<Vec<$crate::GatewayRecord>> {
                Ok(sqlx::query_as(
                    "SELECT id, started_at_ms, seen_at_ms, listen_addr, version FROM cluster_gateways ORDER BY id",
                )
                .fetch_all(self.pool())
                .await?)
            }

            async fn remove_gateway(&self, id: &str) -> $crate::Result<bool> {
                let mut tx = self.begin_write().await?;
                sqlx::query("DELETE FROM cluster_leases WHERE holder = $1").bind(id).execute(&mut *tx).await?;
                let removed = sqlx::query("DELETE FROM cluster_gateways WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                self.commit(tx).await?;
                Ok(removed > 0)
            }

            async fn forget_gateways(&self, seen_before_ms: i64) -> $crate::Result<u64> {
                Ok(sqlx::query("DELETE FROM cluster_gateways WHERE seen_at_ms < $1")
                    .bind(seen_before_ms)
                    .execute(self.pool())
                    .await?
                    .rows_affected())
            }

            async fn try_acquire_lease(
                &self,
                name: &str,
                holder: &str,
                ttl_ms: i64,
                now_ms: i64,
            ) -> $crate::Result<bool> {
                // One statement: insert, or take over an expired lease, or renew our own. The
                // WHERE of the upsert is checked against the stored row, so a live lease of
                // another holder is left alone and RETURNING yields nothing.
                let granted = sqlx::query_scalar::<_, String>(
                    "INSERT INTO cluster_leases (name, holder, expires_at_ms, acquired_at_ms) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (name) DO UPDATE SET \
                       acquired_at_ms = CASE WHEN cluster_leases.holder = excluded.holder \
                                             THEN cluster_leases.acquired_at_ms ELSE excluded.acquired_at_ms END, \
                       holder = excluded.holder, expires_at_ms = excluded.expires_at_ms \
                     WHERE cluster_leases.holder = excluded.holder OR cluster_leases.expires_at_ms <= $4 \
                     RETURNING holder",
                )
                .bind(name)
                .bind(holder)
                .bind(now_ms.saturating_add(ttl_ms))
                .bind(now_ms)
                .fetch_optional(self.pool())
                .await
                .map_err($crate::StoreError::from);
                Ok(self.observed(granted)?.is_some())
            }

            async fn release_lease(&self, name: &str, holder: &str) -> $crate::Result<bool> {
                Ok(sqlx::query("DELETE FROM cluster_leases WHERE name = $1 AND holder = $2")
                    .bind(name)
                    .bind(holder)
                    .execute(self.pool())
                    .await?
                    .rows_affected()
                    > 0)
            }

            async fn list_leases(&self) -> $crate::Result<Vec<$crate::LeaseRecord>> {
                Ok(sqlx::query_as(
                    "SELECT name, holder, expires_at_ms, acquired_at_ms FROM cluster_leases ORDER BY name",
                )
                .fetch_all(self.pool())
                .await?)
            }
        }
    };
}

pub(crate) use cluster_store;
