//! How many kernels this crate has launched: benchmarks read it around a decode step to
//! report launches per step (Burn's own ops are not counted).

use std::sync::atomic::{AtomicU64, Ordering};

static LAUNCHES: AtomicU64 = AtomicU64::new(0);

/// Kernels launched by this crate since the process started.
pub fn launches() -> u64 {
    LAUNCHES.load(Ordering::Relaxed)
}

/// Counts one launch; every launch site calls it.
pub(crate) fn count() {
    LAUNCHES.fetch_add(1, Ordering::Relaxed);
}
