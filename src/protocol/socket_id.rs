//! Socket ids in the `\d+\.\d+` form every server SDK insists on.

use std::fmt;
use std::str::FromStr;

/// Identifies one WebSocket connection, cluster-wide unique with overwhelming probability.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SocketId {
    high: u64,
    low: u64,
}

/// Largest value of each half; soketi and sockudo use the same range.
const HALF_MAX: u64 = 10_000_000_000;

impl SocketId {
    /// A fresh random socket id.
    pub fn random() -> Self {
        use rand::Rng;
        let mut rng = rand::rng();
        SocketId {
            high: rng.random_range(0..=HALF_MAX),
            low: rng.random_range(0..=HALF_MAX),
        }
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.high, self.low)
    }
}

/// The text was not of the form `digits.digits`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid socket id {0:?}: expected the form 1234.5678")]
pub struct InvalidSocketId(pub String);

impl FromStr for SocketId {
    type Err = InvalidSocketId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidSocketId(s.to_owned());
        let (high, low) = s.split_once('.').ok_or_else(invalid)?;
        let digits = |part: &str| -> Result<u64, InvalidSocketId> {
            if part.is_empty() || part.len() > 19 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            part.parse().map_err(|_| invalid())
        };
        Ok(SocketId {
            high: digits(high)?,
            low: digits(low)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let id = SocketId::random();
        assert_eq!(id.to_string().parse::<SocketId>(), Ok(id));
    }

    #[test]
    fn rejects_other_shapes() {
        for bad in ["", "1", "1.", ".1", "a.1", "1.2.3", "-1.2", "1 .2"] {
            assert!(bad.parse::<SocketId>().is_err(), "{bad}");
        }
        assert!("123.456".parse::<SocketId>().is_ok());
    }
}
