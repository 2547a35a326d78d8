//! Values written as text or numbers in a description: durations, ages, sizes.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// The longest duration a description may give: longer values are typos, and unbounded ones
/// would overflow timers.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// A duration written as seconds (`2`, `0.5`) or as text (`"500ms"`, `"1m 30s"`), at most a day.
pub(super) fn duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Duration;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a duration: seconds (2, 0.5) or text (\"500ms\", \"2s\")")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
            bounded(
                Duration::from_secs(v.min(MAX_DURATION.as_secs() + 1)),
                &v.to_string(),
            )
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::custom(format!(
                    "{v} is negative: a duration is 0 or more"
                ))),
            }
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Duration, E> {
            if v.is_finite() && v >= 0.0 && v <= MAX_DURATION.as_secs_f64() {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(E::custom(format!(
                    "{v} is not a number of seconds from 0 to {}",
                    MAX_DURATION.as_secs()
                )))
            }
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
            let d = humantime::parse_duration(v).map_err(|e| {
                E::custom(format!(
                    "`{v}` is not a duration ({e}); write seconds (2, 0.5) or text (\"500ms\", \"2s\")"
                ))
            })?;
            bounded(d, v)
        }
    }
    fn bounded<E: serde::de::Error>(d: Duration, written: &str) -> Result<Duration, E> {
        if d <= MAX_DURATION {
            Ok(d)
        } else {
            Err(E::custom(format!(
                "duration {written} is longer than a day"
            )))
        }
    }
    de.deserialize_any(Visitor)
}

/// A retention age: like [`duration`] but up to ten years ("7d", "12 weeks").
pub(super) fn age<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(de)?;
    let d = humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration ({e}); write e.g. \"7d\" or \"12h\""
        ))
    })?;
    if d > Duration::from_secs(3650 * 24 * 3600) {
        return Err(serde::de::Error::custom(format!(
            "`{text}` is longer than ten years"
        )));
    }
    Ok(Some(d))
}

/// A size in bytes, written as a number or as text ("500MB", "10 GiB").
pub(super) fn size<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a size: bytes (1000000) or text (\"500MB\", \"10GiB\")")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("{v} is negative: a size is 0 or more")))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
            v.parse::<bytesize::ByteSize>()
                .map(|b| b.as_u64())
                .map_err(|e| E::custom(format!("`{v}` is not a size ({e}); write e.g. \"500MB\"")))
        }
    }
    de.deserialize_any(Visitor).map(Some)
}
