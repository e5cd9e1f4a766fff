//! The native analyses on every Redis and Valkey server of the list (`DCS_EXPORTER_REDIS_SERVERS`,
//! see `common::servers`): each test runs its part on each server in turn and says on the
//! terminal which server each part ran on, how long it took, or why it does not apply there.
//!
//! Ground truth is what the test wrote and what each server itself answers (`MEMORY USAGE`,
//! `OBJECT FREQ`, `OBJECT IDLETIME`, `INFO`), never what the exporter printed. The truth tests
//! are in [`standalone`], the touch tests in [`touch`], replica, cluster and TLS in
//! [`topology`], the README's ACL user in [`acl`]. The planted keyspace, the waits and the
//! readers of `/metrics` and the command counts are `native`'s; this module adds an exporter
//! that stops when a server's part fails.

mod acl;
mod standalone;
mod topology;
mod touch;

use std::time::Duration;

use crate::common::{start_exporter, Exporter, TempDir};
pub(crate) use crate::native::{
    calls, dataset, expected_top, keys_of, load, plant, wait_failure, wait_success, Planted,
    DEADLINE,
};
use dcs_key_exporter::app::RunOptions;

/// Starts the exporter; it is stopped (cancelled) when the returned guard is dropped too, so a
/// server's failed part leaves nothing running into the next server's.
async fn start(yaml: &str, dir: &TempDir) -> (Exporter, tokio_util::sync::DropGuard) {
    let e = start_exporter(
        load(yaml, dir),
        RunOptions::default(),
        Duration::from_secs(15),
    )
    .await;
    let guard = e.cancel.clone().drop_guard();
    (e, guard)
}
