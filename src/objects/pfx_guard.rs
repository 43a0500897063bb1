//! Limits checked on a PKCS#12 file before it is decoded, so a host
//! answering for the vault cannot make a read cost unbounded CPU or memory.
//!
//! The decoder derives a key (PBKDF2 or the PKCS#12 KDF) for the MAC and for
//! each encrypted safe and shrouded key, each at the iteration count the
//! file states, and caps each count at 1,000,000 only; it also accepts
//! scrypt with up to 1 GiB of memory. Key Vault writes a few thousand
//! iterations and no scrypt. So before decoding, this walks the DER (and
//! the DER inside OCTET STRINGs) within a node and depth budget and sums
//! every iteration count it can see: the MAC's (`macSalt`, `iterations`)
//! and every (salt, iteration count) pair of PBES1, PBES2 and PKCS#12
//! parameters. Shrouded keys inside an encrypted safe are visible only
//! after decryption; the decoder's own cap applies to them, and the size
//! limit bounds how many there can be.

/// Largest PKCS#12 file decoded. Key Vault stores at most 25 KB per secret
/// value (base64), so a real certificate's PFX is well under this.
pub const MAX_PFX_BYTES: usize = 64 * 1024;
/// Sum of every key derivation's iteration count in one file.
pub const MAX_TOTAL_ITERATIONS: u64 = 1_000_000;
/// DER nesting (a real PFX nests about 15 deep, certificates included).
pub const MAX_DEPTH: usize = 32;
/// DER elements walked in one file (a PFX with a chain of three has a few
/// hundred).
pub const MAX_ELEMENTS: usize = 20_000;

/// The scrypt OID (1.3.6.1.4.1.11591.4.11) as DER content.
const SCRYPT_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x04, 0x0b];

const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const SEQUENCE: u8 = 0x30;

/// Why a file was refused before decoding (no byte of the file is named).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    TooLarge,
    TooDeep,
    TooManyElements,
    TooManyIterations,
    Scrypt,
    Malformed,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TooLarge => write!(f, "the file is larger than {MAX_PFX_BYTES} bytes"),
            Refusal::TooDeep => write!(f, "its DER nests deeper than {MAX_DEPTH} levels"),
            Refusal::TooManyElements => {
                write!(f, "it has more than {MAX_ELEMENTS} DER elements")
            }
            Refusal::TooManyIterations => write!(
                f,
                "its key derivations ask for more than {MAX_TOTAL_ITERATIONS} iterations in all"
            ),
            Refusal::Scrypt => write!(f, "it uses scrypt, which Key Vault never writes"),
            Refusal::Malformed => write!(f, "it is not DER"),
        }
    }
}

/// One DER element: tag, content, and what follows it.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    rest: &'a [u8],
}

fn next(input: &[u8]) -> Result<Tlv<'_>, Refusal> {
    let (&tag, after) = input.split_first().ok_or(Refusal::Malformed)?;
    if tag & 0x1f == 0x1f {
        // Multi-byte tags never occur in PKCS#12.
        return Err(Refusal::Malformed);
    }
    let (&first, after) = after.split_first().ok_or(Refusal::Malformed)?;
    let (len, after) = if first < 0x80 {
        (usize::from(first), after)
    } else {
        let n = usize::from(first & 0x7f);
        // 0x80 is BER's indefinite length; more than 4 bytes is absurd here.
        if n == 0 || n > 4 || after.len() < n {
            return Err(Refusal::Malformed);
        }
        let len = after[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &after[n..])
    };
    if after.len() < len {
        return Err(Refusal::Malformed);
    }
    Ok(Tlv {
        tag,
        content: &after[..len],
        rest: &after[len..],
    })
}

struct Walk {
    elements: usize,
    iterations: u64,
}

impl Walk {
    /// Walks a run of elements at `depth`.
    fn run(&mut self, mut input: &[u8], depth: usize) -> Result<(), Refusal> {
        if depth > MAX_DEPTH {
            return Err(Refusal::TooDeep);
        }
        // The previous sibling was an OCTET STRING (a salt): an INTEGER
        // right after it is an iteration count.
        let mut after_salt = false;
        while !input.is_empty() {
            let tlv = next(input)?;
            self.elements += 1;
            if self.elements > MAX_ELEMENTS {
                return Err(Refusal::TooManyElements);
            }
            match tlv.tag {
                INTEGER if after_salt => self.count(tlv.content)?,
                OID if tlv.content == SCRYPT_OID => return Err(Refusal::Scrypt),
                OCTET_STRING => self.maybe_der(tlv.content, depth + 1)?,
                t if t & 0x20 != 0 => self.run(tlv.content, depth + 1)?,
                _ => {}
            }
            after_salt = tlv.tag == OCTET_STRING;
            input = tlv.rest;
        }
        Ok(())
    }

    /// An OCTET STRING may hold DER (the authenticated safe, safe contents,
    /// a certificate) or opaque bytes (a salt, ciphertext): walked when it
    /// parses, skipped when it does not. Limits hold either way.
    fn maybe_der(&mut self, content: &[u8], depth: usize) -> Result<(), Refusal> {
        if content.first() != Some(&SEQUENCE) {
            return Ok(());
        }
        let before = self.iterations;
        match self.run(content, depth) {
            Err(Refusal::Malformed) => {
                // Opaque after all: what it seemed to state does not count.
                self.iterations = before;
                Ok(())
            }
            other => other,
        }
    }

    fn count(&mut self, integer: &[u8]) -> Result<(), Refusal> {
        let digits = match integer {
            [0, rest @ ..] => rest,
            all => all,
        };
        if digits.len() > 8 {
            return Err(Refusal::TooManyIterations);
        }
        let n = digits
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        self.iterations = self.iterations.saturating_add(n);
        if self.iterations > MAX_TOTAL_ITERATIONS {
            return Err(Refusal::TooManyIterations);
        }
        Ok(())
    }
}

/// Checks a PKCS#12 file against the limits above.
pub fn check(pfx: &[u8]) -> Result<(), Refusal> {
    if pfx.len() > MAX_PFX_BYTES {
        return Err(Refusal::TooLarge);
    }
    let outer = next(pfx)?;
    if outer.tag != SEQUENCE || !outer.rest.is_empty() {
        return Err(Refusal::Malformed);
    }
    let mut walk = Walk {
        elements: 0,
        iterations: 0,
    };
    walk.run(pfx, 0)
}
