//! The parsers of numeric option values: every duration and count on the
//! command line goes through one of these, so each has a range, and a value
//! outside it is refused (exit 2) with the range in the message; clap quotes
//! what the user typed.

use std::time::Duration;

/// Why an option value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("not a number of seconds; give one from {min} to {max}, e.g. 2.5")]
    NotSeconds { min: Secs, max: Secs },
    #[error("out of range; give a number of seconds from {min} to {max}")]
    SecondsOutOfRange { min: Secs, max: Secs },
    #[error("out of range; give 0 (off) or a number of seconds from {min} to {max}")]
    SecondsOutOfRangeOrOff { min: Secs, max: Secs },
    #[error("not a whole number; give one from {min} to {max}")]
    NotWhole { min: u64, max: u64 },
    #[error("out of range; give a whole number from {min} to {max}")]
    WholeOutOfRange { min: u64, max: u64 },
}

/// A duration written as seconds (`0.1`, `3600`) in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secs(pub Duration);

impl std::fmt::Display for Secs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

/// A duration as an option's default value: seconds, as the user writes them.
pub fn secs_text(d: Duration) -> String {
    Secs(d).to_string()
}

/// The durations an option accepts, bounds included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecondsRange {
    pub min: Duration,
    pub max: Duration,
}

const fn range(min: Duration, max: Duration) -> SecondsRange {
    SecondsRange { min, max }
}

/// A wait for the network: connecting, a reply, a client's handshake.
pub const TIMEOUT: SecondsRange = range(Duration::from_millis(100), Duration::from_secs(3600));
/// The server's idle timeout: below a second it would close connections
/// between a client's messages.
pub const IDLE_TIMEOUT: SecondsRange = range(Duration::from_secs(1), Duration::from_secs(604_800));
/// Time to finish the frame in progress on shutdown; 0 gives none.
pub const SHUTDOWN_TIMEOUT: SecondsRange = range(Duration::ZERO, Duration::from_secs(3600));
/// A period of reports or of measuring: up to a day.
pub const PERIOD: SecondsRange = range(Duration::from_millis(100), Duration::from_secs(86_400));
/// A pause before measuring: none up to a day.
pub const PAUSE: SecondsRange = range(Duration::ZERO, Duration::from_secs(86_400));
/// How long a sink may take to store a message: below the duplicate window
/// of a stream msglog creates (two minutes), so a retry is never stored twice.
pub const SINK_TIMEOUT: SecondsRange = range(Duration::from_millis(100), Duration::from_secs(60));

/// Parses a number of seconds within `range`.
pub fn parse_seconds(text: &str, range: SecondsRange) -> Result<Duration, ValueError> {
    let (min, max) = (Secs(range.min), Secs(range.max));
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| ValueError::NotSeconds { min, max })?;
    // Compared as numbers first: NaN, infinities and negative or huge
    // values never become a Duration.
    if !(range.min.as_secs_f64()..=range.max.as_secs_f64()).contains(&secs) {
        return Err(ValueError::SecondsOutOfRange { min, max });
    }
    Ok(Duration::from_secs_f64(secs).clamp(range.min, range.max))
}

/// The value parser of an option in seconds within `range`.
pub fn seconds(
    range: SecondsRange,
) -> impl Fn(&str) -> Result<Duration, ValueError> + Clone + Send + Sync + 'static {
    move |text| parse_seconds(text, range)
}

/// Like [`seconds`], where 0 also means "off" (`None`).
pub fn seconds_or_off(
    range: SecondsRange,
) -> impl Fn(&str) -> Result<Option<Duration>, ValueError> + Clone + Send + Sync + 'static {
    move |text| match text.trim().parse::<f64>() {
        Ok(0.0) => Ok(None),
        _ => parse_seconds(text, range).map(Some).map_err(|e| match e {
            ValueError::SecondsOutOfRange { min, max } => {
                ValueError::SecondsOutOfRangeOrOff { min, max }
            }
            other => other,
        }),
    }
}

/// Parses a whole number from `min` to `max`.
pub fn parse_whole(text: &str, min: u64, max: u64) -> Result<u64, ValueError> {
    let trimmed = text.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ValueError::NotWhole { min, max });
    }
    // All digits: a parse failure can only be a number too large for u64.
    match trimmed.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ValueError::WholeOutOfRange { min, max }),
    }
}

/// The value parser of a whole-number option from `min` to `max`, which
/// must fit `T`.
pub fn whole<T: TryFrom<u64>>(
    min: u64,
    max: u64,
) -> impl Fn(&str) -> Result<T, ValueError> + Clone + Send + Sync + 'static {
    move |text| {
        let n = parse_whole(text, min, max)?;
        T::try_from(n).map_err(|_| ValueError::WholeOutOfRange { min, max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_within_the_range_are_taken_as_they_are() {
        assert_eq!(parse_seconds("10", TIMEOUT), Ok(Duration::from_secs(10)));
        assert_eq!(
            parse_seconds("0.25", TIMEOUT),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(
            parse_seconds("0.1", TIMEOUT),
            Ok(Duration::from_millis(100))
        );
        assert_eq!(
            parse_seconds("3600", TIMEOUT),
            Ok(Duration::from_secs(3600))
        );
        assert_eq!(parse_seconds("0", SHUTDOWN_TIMEOUT), Ok(Duration::ZERO));
    }

    #[test]
    fn zero_negative_huge_and_not_finite_are_out_of_range() {
        let out = ValueError::SecondsOutOfRange {
            min: Secs(Duration::from_millis(100)),
            max: Secs(Duration::from_secs(3600)),
        };
        for text in [
            "0",
            "-1",
            "0.05",
            "3600.5",
            "18446744073709551615",
            "1e300",
            "inf",
            "NaN",
        ] {
            assert_eq!(parse_seconds(text, TIMEOUT), Err(out.clone()), "{text}");
        }
        assert_eq!(
            out.to_string(),
            "out of range; give a number of seconds from 0.1 to 3600"
        );
        assert_eq!(
            parse_seconds("0", IDLE_TIMEOUT).unwrap_err().to_string(),
            "out of range; give a number of seconds from 1 to 604800"
        );
    }

    #[test]
    fn what_is_not_a_number_says_what_to_give() {
        let e = parse_seconds("10s", TIMEOUT).unwrap_err();
        assert_eq!(
            e.to_string(),
            "not a number of seconds; give one from 0.1 to 3600, e.g. 2.5"
        );
        assert!(parse_seconds("", TIMEOUT).is_err());
    }

    #[test]
    fn zero_turns_an_interval_off() {
        let parse = seconds_or_off(PERIOD);
        assert_eq!(parse("0"), Ok(None));
        assert_eq!(parse("0.0"), Ok(None));
        assert_eq!(parse("60"), Ok(Some(Duration::from_secs(60))));
        assert_eq!(
            parse("0.01").unwrap_err().to_string(),
            "out of range; give 0 (off) or a number of seconds from 0.1 to 86400"
        );
        assert!(matches!(
            parse("-0.5"),
            Err(ValueError::SecondsOutOfRangeOrOff { .. })
        ));
    }

    #[test]
    fn whole_numbers_are_checked_against_their_range() {
        let parse = whole::<usize>(1, 1_000_000);
        assert_eq!(parse("10000"), Ok(10_000));
        assert_eq!(parse("1"), Ok(1));
        let out = ValueError::WholeOutOfRange {
            min: 1,
            max: 1_000_000,
        };
        assert_eq!(parse("0"), Err(out.clone()));
        assert_eq!(parse("1000001"), Err(out.clone()));
        assert_eq!(parse("18446744073709551615"), Err(out.clone()));
        assert_eq!(parse("99999999999999999999999"), Err(out));
        for text in ["", "-1", "1.5", "ten", "+3"] {
            assert_eq!(
                parse(text),
                Err(ValueError::NotWhole {
                    min: 1,
                    max: 1_000_000
                }),
                "{text}"
            );
        }
        assert_eq!(
            whole::<u16>(1, 65_535)("0").unwrap_err().to_string(),
            "out of range; give a whole number from 1 to 65535"
        );
    }
}
