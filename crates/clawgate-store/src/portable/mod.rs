//! Store traits whose SQL both backends run as written: one body per trait, a macro that
//! expands it for [`crate::SqliteStore`] and for [`crate::PgStore`].
//!
//! What makes a body portable: placeholders are written `$1`, `$2`, … (sqlx binds them by
//! number on SQLite too), the statements use only what both dialects share (`ON CONFLICT …
//! DO UPDATE`, `RETURNING`, `excluded.`), and the helpers it calls (`pool`, `begin_write`,
//! `commit`, `observed`) exist with the same meaning on both stores. A trait that needs one
//! dialect's feature (`FOR UPDATE SKIP LOCKED`, `BEGIN IMMEDIATE` semantics) keeps a file per
//! backend instead.
//!
//! A macro rather than generic functions over `sqlx::Database`: the body then reads as the
//! plain sqlx code of either file it replaces, and each expansion is type-checked against its
//! own driver, without a wall of `Encode`/`Type`/`FromRow` bounds.

pub(crate) mod approvals;
pub(crate) mod cluster;
