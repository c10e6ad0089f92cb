//! A strict bencode check run before any bencoded input reaches the serde decoder. It rejects
//! what BEP 3 forbids and what a hostile sender uses against parsers: integers that overflow
//! i64 (the decoder underneath would silently wrap them), leading zeros and `-0`, string
//! lengths beyond the input, and nesting deeper than [`MAX_DEPTH`]. One linear pass, no
//! allocation.

use serde::Deserialize;

/// Deepest nesting of lists and dictionaries accepted. Real messages nest a handful of levels.
pub const MAX_DEPTH: usize = 64;

/// Why bytes are not acceptable bencode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BencodeError {
    /// The input ends inside a value.
    #[error("truncated at byte {0}")]
    Truncated(usize),
    /// A byte that cannot start or continue a value here.
    #[error("unexpected byte at {0}")]
    Unexpected(usize),
    /// An integer that is malformed or outside i64.
    #[error("bad integer at byte {0}")]
    BadInteger(usize),
    /// Lists and dictionaries nest too deeply.
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// Bytes follow the value where none may.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// The value is well-formed but not what the message needs.
    #[error("{0}")]
    Shape(String),
}

/// Checks that `b` starts with one well-formed value and returns its length.
pub fn check_prefix(b: &[u8]) -> Result<usize, BencodeError> {
    // An explicit stack of "inside a dict, expecting a key" flags keeps recursion off the
    // call stack, so depth is bounded by MAX_DEPTH only.
    let mut stack: [bool; MAX_DEPTH] = [false; MAX_DEPTH];
    let mut depth = 0usize;
    let mut expect_key = false;
    let mut i = 0usize;
    loop {
        let c = *b.get(i).ok_or(BencodeError::Truncated(i))?;
        if c == b'e' && depth > 0 {
            if stack[depth - 1] && !expect_key {
                return Err(BencodeError::Unexpected(i)); // a key without its value
            }
            depth -= 1;
            i += 1;
            if depth == 0 {
                return Ok(i);
            }
            expect_key = stack[depth - 1];
            continue;
        }
        if expect_key && !c.is_ascii_digit() {
            return Err(BencodeError::Unexpected(i));
        }
        match c {
            b'i' => i = integer(b, i + 1, b'e')?,
            b'0'..=b'9' => {
                let colon = integer(b, i, b':')?;
                let len = parse_u64(&b[i..colon - 1]).ok_or(BencodeError::BadInteger(i))?;
                let end = (colon as u64)
                    .checked_add(len)
                    .filter(|&e| e <= b.len() as u64)
                    .ok_or(BencodeError::Truncated(b.len()))?;
                i = end as usize;
            }
            b'l' | b'd' => {
                if depth == MAX_DEPTH {
                    return Err(BencodeError::TooDeep);
                }
                stack[depth] = c == b'd';
                depth += 1;
                i += 1;
                expect_key = c == b'd';
                continue;
            }
            _ => return Err(BencodeError::Unexpected(i)),
        }
        if depth == 0 {
            return Ok(i);
        }
        // Inside a dict, keys and values alternate.
        if stack[depth - 1] {
            expect_key = !expect_key;
        }
    }
}

/// Checks a whole buffer holds exactly one well-formed value.
pub fn check(b: &[u8]) -> Result<(), BencodeError> {
    let n = check_prefix(b)?;
    if n != b.len() {
        return Err(BencodeError::Trailing(b.len() - n));
    }
    Ok(())
}

/// Checks, then decodes with serde.
pub fn decode<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, BencodeError> {
    check(b)?;
    librqbit_bencode::from_bytes(b).map_err(|e| BencodeError::Shape(e.to_string()))
}

/// Checks and decodes the value at the start of `b`, returning the bytes after it.
pub fn decode_prefix<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<(T, &'a [u8]), BencodeError> {
    let n = check_prefix(b)?;
    let v =
        librqbit_bencode::from_bytes(&b[..n]).map_err(|e| BencodeError::Shape(e.to_string()))?;
    Ok((v, &b[n..]))
}

/// Scans an integer starting at `start` up to `end_byte`; returns the index after `end_byte`.
fn integer(b: &[u8], start: usize, end_byte: u8) -> Result<usize, BencodeError> {
    let rest = b.get(start..).ok_or(BencodeError::Truncated(start))?;
    let len = rest
        .iter()
        .position(|&c| c == end_byte)
        .ok_or(BencodeError::Truncated(b.len()))?;
    let digits = &rest[..len];
    let (neg, body) = match digits.split_first() {
        Some((b'-', body)) if end_byte == b'e' => (true, body),
        _ => (false, digits),
    };
    let ok = !body.is_empty()
        && body.iter().all(u8::is_ascii_digit)
        && (body.len() == 1 || body[0] != b'0')
        && !(neg && body == b"0")
        && match parse_u64(body) {
            Some(v) if neg => v <= i64::MAX as u64 + 1,
            Some(v) => end_byte == b':' || v <= i64::MAX as u64,
            None => false,
        };
    if !ok {
        return Err(BencodeError::BadInteger(start));
    }
    Ok(start + len + 1)
}

fn parse_u64(d: &[u8]) -> Option<u64> {
    d.iter().try_fold(0u64, |acc, &c| {
        acc.checked_mul(10)?.checked_add((c - b'0') as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_well_formed() {
        for ok in [
            &b"i0e"[..],
            b"i-5e",
            b"0:",
            b"3:abc",
            b"le",
            b"de",
            b"d1:ai1e1:bl1:xee",
            b"i9223372036854775807e",
            b"i-9223372036854775808e",
        ] {
            assert_eq!(check(ok), Ok(()), "{}", String::from_utf8_lossy(ok));
        }
        assert_eq!(check_prefix(b"d1:ai1eeXYZ"), Ok(8));
    }

    #[test]
    fn rejects_what_parsers_trip_on() {
        for bad in [
            &b""[..],
            b"i",
            b"ie",
            b"i-0e",
            b"i01e",
            b"i9223372036854775808e",
            b"i18446744073709551717e",
            b"18446744073709551617:a",
            b"5:abc",
            b"01:a",
            b"d1:a",
            b"di1ei2ee",
            b"l1:a",
            b"x",
            b"i1ex",
            b"d1:ae",
            b"d1:a1:b1:ce",
        ] {
            assert!(check(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let deep = [b"l".repeat(MAX_DEPTH + 1), b"e".repeat(MAX_DEPTH + 1)].concat();
        assert_eq!(check(&deep), Err(BencodeError::TooDeep));
        let ok_deep = [b"l".repeat(MAX_DEPTH), b"e".repeat(MAX_DEPTH)].concat();
        assert_eq!(check(&ok_deep), Ok(()));
    }
}
