//! Small helpers shared by the handlers: randomness, identifiers, time formatting, private files.

use std::time::{SystemTime, UNIX_EPOCH};

/// Fills `buf` from the system CSPRNG.
pub(crate) fn random_bytes(buf: &mut [u8]) {
    use aws_lc_rs::rand::SecureRandom;
    // The system random source only fails if the kernel cannot supply entropy; a test emulator
    // can then still run with weaker identifiers, so fall back to a time-derived fill.
    if aws_lc_rs::rand::SystemRandom::new().fill(buf).is_err() {
        let seed = now_nanos();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(31);
        }
    }
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// `n` random bytes as lowercase hex (Key Vault versions are 16 bytes = 32 hex digits).
pub(crate) fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    random_bytes(&mut buf);
    hex(&buf)
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random UUID (version 4 layout) as used in trace and correlation ids.
pub(crate) fn random_uuid() -> String {
    let mut b = [0u8; 16];
    random_bytes(&mut b);
    uuid_from(b)
}

/// A UUID derived from `input` by SHA-256, so the same client id always maps to the same object id.
pub(crate) fn uuid_from_name(input: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, input.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest.as_ref()[..16]);
    uuid_from(b)
}

fn uuid_from(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Current Unix time in whole seconds.
pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `2024-06-04 11:40:28Z`, the timestamp style of Entra ID error bodies.
pub(crate) fn entra_timestamp(unix: i64) -> String {
    format_unix(unix, "[year]-[month]-[day] [hour]:[minute]:[second]Z")
}

/// `2024-06-04T11:40:28.0000000Z`, the style Entra ID uses inside error descriptions.
pub(crate) fn entra_iso(unix: i64) -> String {
    format_unix(
        unix,
        "[year]-[month]-[day]T[hour]:[minute]:[second].0000000Z",
    )
}

/// `2024-06-04 11:40:28.000000`, the `expiresOn` style of `az account get-access-token`.
pub(crate) fn az_cli_time(unix: i64) -> String {
    format_unix(unix, "[year]-[month]-[day] [hour]:[minute]:[second].000000")
}

fn format_unix(unix: i64, pattern: &str) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(unix) else {
        return unix.to_string();
    };
    match time::format_description::parse_borrowed::<1>(pattern) {
        Ok(fmt) => t.format(&fmt).unwrap_or_else(|_| unix.to_string()),
        Err(_) => unix.to_string(),
    }
}

/// Whether `s` is 32 hexadecimal digits, the shape of a Key Vault secret version.
pub(crate) fn is_version_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Writes `bytes` to `path` with mode 0600, replacing it atomically (write + rename), so a
/// reader never sees a half-written token.
pub(crate) fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<(), std::io::Error> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp-{}", random_hex(4)));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_right_shape() {
        assert!(is_version_id(&random_hex(16)));
        let u = random_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(uuid_from_name("a"), uuid_from_name("a"));
        assert_ne!(uuid_from_name("a"), uuid_from_name("b"));
    }

    #[test]
    fn timestamps() {
        assert_eq!(entra_timestamp(0), "1970-01-01 00:00:00Z");
        assert_eq!(entra_iso(86400), "1970-01-02T00:00:00.0000000Z");
        assert_eq!(az_cli_time(0), "1970-01-01 00:00:00.000000");
    }
}
