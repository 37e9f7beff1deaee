//! Training progress on stderr: a bar over the batches of an epoch (with ETA and the running
//! loss) when stderr is a terminal and the epoch is long enough to wait on; otherwise only the
//! plain per-epoch lines, which logs and CI keep readable.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Epochs expected to take less than this show no bar: it would only flicker.
const SHOW_AFTER: Duration = Duration::from_secs(2);

/// The batch bar of `ode train` and the epoch lines printed around it.
#[derive(Clone)]
pub struct EpochProgress {
    bar: ProgressBar,
    terminal: bool,
    epoch_start: Instant,
    quiet: bool,
}

impl EpochProgress {
    /// A hidden bar; `quiet` prints nothing at all.
    pub fn new(quiet: bool) -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(
                "epoch {prefix:>3} [{bar:30}] {pos}/{len} batches, loss {msg}, {elapsed} (ETA {eta})",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        EpochProgress {
            bar,
            terminal: !quiet && std::io::stderr().is_terminal(),
            epoch_start: Instant::now(),
            quiet,
        }
    }

    /// Batch `batch` of `batches` of `epoch` is done, with running loss `loss`.
    pub fn batch(&mut self, epoch: usize, batch: usize, batches: usize, loss: f64) {
        if batch == 1 {
            self.epoch_start = Instant::now();
            self.bar.reset();
            self.bar.set_length(batches as u64);
            self.bar.set_prefix(epoch.to_string());
        }
        self.bar.set_position(batch as u64);
        self.bar.set_message(format!("{loss:.5}"));
        if self.bar.is_hidden() && show_bar(self.terminal, self.epoch_start.elapsed(), batch, batches) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    /// Prints an epoch line above the bar (nothing with `quiet`).
    pub fn line(&self, text: &str) {
        if !self.quiet {
            self.bar.suspend(|| eprintln!("{text}"));
        }
    }

    /// Removes the bar when training ends.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Whether to draw the bar: on a terminal, once the epoch's projected length (the time so far
/// over the batches done) passes [`SHOW_AFTER`].
fn show_bar(terminal: bool, elapsed: Duration, batch: usize, batches: usize) -> bool {
    if !terminal || batch == 0 {
        return false;
    }
    let projected = elapsed.as_secs_f64() * batches as f64 / batch as f64;
    projected >= SHOW_AFTER.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::show_bar;
    use std::time::Duration;

    #[test]
    fn the_bar_shows_only_on_a_terminal_for_epochs_of_two_seconds_or_more() {
        let ms = Duration::from_millis;
        // 100 ms for 1 of 10 batches: a 1 s epoch, no bar.
        assert!(!show_bar(true, ms(100), 1, 10));
        // 300 ms for 1 of 10: a 3 s epoch, bar.
        assert!(show_bar(true, ms(300), 1, 10));
        // The same epoch with stderr going to a file or pipe: never.
        assert!(!show_bar(false, ms(300), 1, 10));
        assert!(!show_bar(false, Duration::from_secs(60), 10, 10));
        assert!(!show_bar(true, ms(300), 0, 10));
    }
}
