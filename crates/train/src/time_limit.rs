//! Ends training at an epoch boundary when the next epoch would pass a deadline: a run
//! with a time budget (a GPU lent for minutes) stops with its checkpoint written, and the
//! next run resumes from it.

use std::time::{Duration, Instant};

use burn::train::metric::store::EventStoreClient;
use burn::train::EarlyStoppingStrategy;

/// Stops after the epoch at which `elapsed + mean epoch time > limit`.
#[derive(Debug, Clone)]
pub struct TimeLimit {
    start: Instant,
    limit: Duration,
    epochs: u32,
}

impl TimeLimit {
    /// A budget of `limit` from now.
    pub fn new(limit: Duration) -> Self {
        Self { start: Instant::now(), limit, epochs: 0 }
    }
}

impl EarlyStoppingStrategy for TimeLimit {
    fn should_stop(&mut self, _epoch: usize, _store: &EventStoreClient) -> bool {
        self.epochs += 1;
        let elapsed = self.start.elapsed();
        elapsed + elapsed / self.epochs > self.limit
    }
}
