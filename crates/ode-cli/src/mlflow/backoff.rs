//! The retry schedule of the MLflow sender: exponential back-off, capped.

use std::time::Duration;

/// First wait after a failure.
pub const FIRST: Duration = Duration::from_millis(500);
/// Longest wait between two tries.
pub const CAP: Duration = Duration::from_secs(30);

/// Waits between retries: [`FIRST`], then doubling up to a cap ([`CAP`]); back to [`FIRST`]
/// after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Backoff {
    /// The wait before the next try after a failure, at most `cap` (normally [`CAP`]; shorter
    /// while the run is ending, so the last records go soon after the server is back).
    pub fn failed(&mut self, cap: Duration) -> Duration {
        let wait = self.next.min(cap);
        self.next = (self.next * 2).min(CAP);
        wait
    }

    /// A try succeeded: the next failure waits [`FIRST`] again.
    pub fn succeeded(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_half_a_second_up_to_thirty() {
        let mut b = Backoff::default();
        let waits: Vec<f64> = (0..10).map(|_| b.failed(CAP).as_secs_f64()).collect();
        assert_eq!(waits, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]);
        b.succeeded();
        assert_eq!(b.failed(CAP), FIRST);
        // A lower cap bounds the wait without resetting the schedule.
        let capped: Vec<f64> = (0..3).map(|_| b.failed(Duration::from_secs(2)).as_secs_f64()).collect();
        assert_eq!(capped, [1.0, 2.0, 2.0]);
        assert_eq!(b.failed(CAP), Duration::from_secs(8));
    }
}
