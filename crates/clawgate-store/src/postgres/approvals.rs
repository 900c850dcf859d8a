//! [`ApprovalStore`](crate::ApprovalStore) on PostgreSQL: the one body both backends share
//! ([`crate::portable::approvals`]).

crate::portable::approvals::approval_store!(super::PgStore);
