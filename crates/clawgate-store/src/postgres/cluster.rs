//! [`ClusterStore`](crate::ClusterStore) on PostgreSQL: the one body both backends share
//! ([`crate::portable::cluster`]).

crate::portable::cluster::cluster_store!(super::PgStore);
