//! An opt-in wall-clock profile of the hot path, for finding where a GPU run spends its
//! time where no GPU profiler can (Nsight Systems is not always installed, and `ncu`
//! replays each launch). Set `BSA_PROFILE=1`: every [`span`] then synchronises the device
//! before and after its work and adds the elapsed time to its name, so that asynchronous
//! launches are charged to the span that queued them. Spans nest (a span's time includes
//! those inside it). Without the variable a span only calls its closure.
//!
//! The synchronisations slow a run down: profile to compare parts, time without it.

use std::fmt::Display;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use burn::tensor::backend::Backend;

/// Seconds and calls of one span name.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanTotal {
    /// The span's name.
    pub name: String,
    /// Wall time inside the span, summed over its calls.
    pub seconds: f64,
    /// Times the span ran.
    pub calls: u64,
}

static TOTALS: Mutex<Vec<SpanTotal>> = Mutex::new(Vec::new());

/// Whether `BSA_PROFILE` is set to anything but `0` or the empty string (read once).
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("BSA_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0"))
}

/// Runs `work`, charging its time on `device` (synchronised before and after) to `name`
/// when profiling is [`enabled`]. `name` is formatted only then (pass `format_args!`
/// rather than a `String`: hot paths call this on every layer).
pub fn span<B: Backend, T>(name: impl Display, device: &B::Device, work: impl FnOnce() -> T) -> T {
    if !enabled() {
        return work();
    }
    let _ = B::sync(device);
    let start = Instant::now();
    let out = work();
    let _ = B::sync(device);
    record(&name.to_string(), start.elapsed().as_secs_f64());
    out
}

/// Adds `seconds` to `name`'s total.
pub fn record(name: &str, seconds: f64) {
    let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    match totals.iter_mut().find(|t| t.name == name) {
        Some(total) => {
            total.seconds += seconds;
            total.calls += 1;
        }
        None => totals.push(SpanTotal { name: name.to_string(), seconds, calls: 1 }),
    }
}

/// The totals so far, in the order the names first appeared, and clears them.
pub fn take() -> Vec<SpanTotal> {
    std::mem::take(&mut *TOTALS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// `totals` as a table: name, seconds, calls, milliseconds per call.
pub fn table(totals: &[SpanTotal]) -> String {
    let width = totals.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
    let mut out = format!("{:<width$} {:>10} {:>8} {:>10}\n", "span", "seconds", "calls", "ms/call");
    for t in totals {
        let per_call = 1e3 * t.seconds / t.calls.max(1) as f64;
        out += &format!("{:<width$} {:>10.3} {:>8} {:>10.3}\n", t.name, t.seconds, t.calls, per_call);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_per_name_in_first_seen_order() {
        take();
        record("a", 1.0);
        record("b", 0.5);
        record("a", 2.0);
        let totals = take();
        assert_eq!(totals.len(), 2);
        assert_eq!((totals[0].name.as_str(), totals[0].seconds, totals[0].calls), ("a", 3.0, 2));
        assert_eq!((totals[1].name.as_str(), totals[1].calls), ("b", 1));
        assert!(take().is_empty(), "take clears the totals");
        let text = table(&totals);
        assert!(text.contains("a ") && text.contains("1500.000"), "{text}");
    }
}
