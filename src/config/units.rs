//! Durations, sizes and file modes as users write them.

use std::time::Duration;

use super::ConfigError;

/// Parses `64MiB`, `1G`, `512k`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64, ConfigError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| ConfigError::Size {
        value: s.to_string(),
    })?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(ConfigError::SizeUnit {
                value: s.to_string(),
            })
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| ConfigError::SizeTooLarge {
            value: s.to_string(),
        })
}

/// Parses an octal mode such as `0400` or `440`.
pub fn parse_mode(s: &str) -> Result<u16, ConfigError> {
    let m = u16::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|_| ConfigError::Mode {
        value: s.to_string(),
    })?;
    if m > 0o7777 {
        return Err(ConfigError::ModeRange {
            value: s.to_string(),
        });
    }
    if m & 0o7000 != 0 {
        return Err(ConfigError::ModeSpecialBits {
            value: s.to_string(),
        });
    }
    Ok(m)
}

/// Parses `30s`, `10m`, `24h`, `500ms`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| ConfigError::Duration {
        value: s.to_string(),
    })?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(ConfigError::DurationUnit {
                value: s.to_string(),
            })
        }
    };
    if !secs.is_finite() || !(0.0..=365.0 * 86400.0).contains(&secs) {
        return Err(ConfigError::DurationRange {
            value: s.to_string(),
        });
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_modes_durations() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert_eq!(parse_mode("0400").unwrap(), 0o400);
        assert!(parse_mode("0800").is_err());
        assert!(parse_mode("4755").is_err());
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1y").is_err());
    }
}
