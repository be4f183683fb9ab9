//! The simulator's clock: real time plus an offset that tests move forward.
//!
//! Everything time-dependent (rotation schedule, rate-limit windows, log
//! times) reads this clock, so advancing it shows automatic rotation and the
//! end of a rate-limit block without waiting.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// Real time shifted by how far tests have advanced it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SimClock {
    offset: SignedDuration,
}

impl SimClock {
    /// The simulated present.
    pub(crate) fn now(&self) -> Timestamp {
        Timestamp::now()
            .checked_add(self.offset)
            .unwrap_or(Timestamp::MAX)
    }

    /// Moves the clock forward; it never goes back except through a reset.
    pub(crate) fn advance(&mut self, by: Duration) {
        let by = SignedDuration::try_from(by).unwrap_or(SignedDuration::MAX);
        self.offset = self.offset.saturating_add(by);
    }
}

/// Cuts a timestamp to whole microseconds, the precision Cloudflare shows
/// (`2026-11-14T09:12:44.512345Z`); trailing zeros then drop out when printed.
pub(crate) fn to_micros(at: Timestamp) -> Timestamp {
    Timestamp::from_microsecond(at.as_microsecond()).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_now_forward() {
        let mut clock = SimClock::default();
        let before = clock.now();
        clock.advance(Duration::from_secs(86_400));
        let gained = clock.now().duration_since(before);
        assert!(gained >= SignedDuration::from_secs(86_400), "{gained:?}");
        assert!(gained < SignedDuration::from_secs(86_460), "{gained:?}");
    }

    #[test]
    fn micros_drop_nanoseconds() -> Result<(), jiff::Error> {
        let at: Timestamp = "2026-11-14T09:12:44.512345678Z".parse()?;
        assert_eq!(to_micros(at).to_string(), "2026-11-14T09:12:44.512345Z");
        Ok(())
    }
}
