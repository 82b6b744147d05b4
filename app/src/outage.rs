//! Logging a database outage in a loop that retries: once when it starts, once when it ends,
//! rather than on every try (a loop that retries every second, or a pass over many Runs, would
//! otherwise fill the log while the database is away).

use std::time::Instant;

/// Whether a loop's database work is failing now, and since when.
#[derive(Debug, Default)]
pub(crate) struct Outage(Option<Instant>);

impl Outage {
    /// The work (`what`, as in "cannot …") failed with `error`: a warning the first time.
    pub(crate) fn failed(&mut self, what: &str, error: &dyn std::fmt::Display) {
        if self.0.is_none() {
            tracing::warn!(target: "gevulot", error = %error, "cannot {what}; retrying until the database answers (this is logged again when it does)");
            self.0 = Some(Instant::now());
        } else {
            tracing::debug!(target: "gevulot", error = %error, "cannot {what} yet");
        }
    }

    /// The work (`what`, as in "… goes on") went through: a note if it had been failing.
    pub(crate) fn over(&mut self, what: &str) {
        if let Some(since) = self.0.take() {
            tracing::info!(target: "gevulot", "{what} goes on: the database answers again after {} s", since.elapsed().as_secs());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_told_once_and_its_end_once() {
        let mut o = Outage::default();
        o.over("work");
        assert!(o.0.is_none(), "nothing to end");
        o.failed("work", &"down");
        let since = o.0.expect("failing");
        o.failed("work", &"still down");
        assert_eq!(o.0, Some(since), "the same outage");
        o.over("work");
        assert!(o.0.is_none());
    }
}
