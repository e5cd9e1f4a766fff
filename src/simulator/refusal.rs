//! Why the simulator refuses a request (mapped onto DCS error answers by the HTTP layer), and
//! the ids it makes: shared by the scan analyses (`state`) and the offline key analysis
//! (`offline`), which import this module and not each other.

use rand::RngCore;
use rand_chacha::ChaCha8Rng;

/// Why a request against an instance was refused; mapped onto DCS error answers by the HTTP layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// DCS.4922: hot key analysis unsupported (Redis 3.0 or non-LFU policy).
    HotkeyUnsupported,
    /// DCS.4918: an analysis of this kind is already waiting or running.
    AlreadyRunning,
    /// DCS.4049: the instance is not `RUNNING`.
    InstanceNotRunning,
    /// DCS.4941 / DCS.4942: no such task.
    TaskNotFound,
    /// DCS.4957: the task is still waiting or running.
    TaskActive,
    /// DCS.4800: an invalid parameter, named.
    Invalid(&'static str),
}

/// A random version-4 UUID from the simulator's seeded generator.
pub fn uuid_from(rng: &mut ChaCha8Rng) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}
