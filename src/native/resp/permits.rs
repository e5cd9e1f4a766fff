//! The process-wide cap on open connections to Redis and Valkey nodes.
//!
//! Each connection holds one permit for as long as its socket is open. The cap leaves file
//! descriptors for the HTTP server (`--web.max-connections`), the DCS client and the process
//! itself: half of what the open-file limit (`ulimit -n`) leaves after [`RESERVED`], between
//! [`MIN_CAP`] and [`MAX_CAP`]; 384 under the common soft limit of 1024. A connection that
//! finds the cap reached waits up to the connect timeout for one to close, then fails with a
//! clear error instead of taking the descriptors the rest of the exporter needs.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ConnError;

/// Descriptors kept out of the computation for everything but Redis connections.
pub const RESERVED: u64 = 256;
/// The cap never goes below this.
pub const MIN_CAP: usize = 16;
/// Nor above this.
pub const MAX_CAP: usize = 4096;

/// A held permit: one open connection.
#[derive(Debug)]
pub struct Permit(#[allow(dead_code)] OwnedSemaphorePermit);

/// A pool of permits.
#[derive(Debug)]
pub struct Permits {
    sem: Arc<Semaphore>,
    cap: usize,
    nofile: Option<u64>,
}

impl Permits {
    /// A pool of `cap` permits.
    pub fn new(cap: usize) -> Self {
        Permits {
            sem: Arc::new(Semaphore::new(cap)),
            cap,
            nofile: None,
        }
    }

    /// The process-wide pool, sized from the open-file limit at first use.
    pub fn global() -> &'static Permits {
        static GLOBAL: OnceLock<Permits> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let nofile = open_file_limit();
            let mut p = Permits::new(cap_for(nofile));
            p.nofile = nofile;
            p
        })
    }

    /// The cap.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Connections open now.
    pub fn in_use(&self) -> usize {
        self.cap - self.sem.available_permits()
    }

    /// A permit, waiting up to `wait` for one.
    pub async fn acquire(&self, wait: Duration) -> Result<Permit, ConnError> {
        match tokio::time::timeout(wait, self.sem.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(Permit(p)),
            _ => Err(ConnError::Connect(format!(
                "{} Redis connections are open, the most this process opens at once{}; \
                 raise the open-file limit (ulimit -n) or split the targets over more exporters",
                self.cap,
                match self.nofile {
                    Some(n) => format!(" (from an open-file limit of {n})"),
                    None => String::new(),
                }
            ))),
        }
    }
}

/// The cap for an open-file limit (`None`: unknown or unlimited).
pub fn cap_for(nofile: Option<u64>) -> usize {
    match nofile {
        Some(n) => (n.saturating_sub(RESERVED) / 2).clamp(MIN_CAP as u64, MAX_CAP as u64) as usize,
        None => MAX_CAP,
    }
}

#[cfg(unix)]
fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_the_rest_of_the_exporter() {
        assert_eq!(cap_for(Some(1024)), 384);
        assert_eq!(cap_for(Some(100)), MIN_CAP);
        assert_eq!(cap_for(Some(1 << 20)), MAX_CAP);
        assert_eq!(cap_for(None), MAX_CAP);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_cap_a_connection_waits_then_fails_clearly() {
        let p = Permits::new(2);
        let a = p.acquire(Duration::from_secs(1)).await.unwrap();
        let _b = p.acquire(Duration::from_secs(1)).await.unwrap();
        assert_eq!(p.in_use(), 2);
        let e = p.acquire(Duration::from_secs(5)).await.unwrap_err();
        assert!(
            e.to_string().contains("2 Redis connections are open"),
            "{e}"
        );
        drop(a);
        assert!(p.acquire(Duration::from_secs(1)).await.is_ok());
    }
}
