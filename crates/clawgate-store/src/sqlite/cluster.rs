//! [`ClusterStore`](crate::ClusterStore) on SQLite: the one body both backends share
//! ([`crate::portable::cluster`]).

crate::portable::cluster::cluster_store!(super::SqliteStore);
