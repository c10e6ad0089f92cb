//! A small zero-copy bencode reader and writer for KRPC (BEP 3 encoding, as used by BEP 5).
//!
//! KRPC messages are tiny dictionaries, decoded on the hot path of a busy node, so the reader
//! never builds a tree: it is a cursor that hands out borrowed slices, validates as it goes and
//! stops at the first error. Nesting depth and integer width are bounded, and every length is
//! checked against the bytes actually present, so hostile input costs at most one pass over the
//! datagram and no allocation.

use thiserror::Error;

/// Deepest nesting of lists/dictionaries accepted. KRPC needs three levels (message → args →
/// `values` list); the slack lets unknown extension keys through without allowing deep recursion.
pub const MAX_DEPTH: usize = 8;

/// Why a byte string is not valid bencode.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum BencodeError {
    /// The input ended inside a value.
    #[error("input ends inside a value")]
    UnexpectedEnd,
    /// A byte that cannot start or continue a value at this position.
    #[error("unexpected byte at offset {0}")]
    UnexpectedByte(usize),
    /// An integer or length that does not fit the accepted range or has a non-canonical form.
    #[error("invalid integer or length at offset {0}")]
    InvalidNumber(usize),
    /// Lists or dictionaries nested deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// Bytes left over after the top-level value.
    #[error("trailing data after the top-level value")]
    TrailingData,
}

type Result<T> = std::result::Result<T, BencodeError>;

/// A forward-only cursor over one bencoded buffer.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// Starts reading at the first byte of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }

    /// The offset of the next unread byte.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Fails unless every byte has been consumed.
    pub fn finish(&self) -> Result<()> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(BencodeError::TrailingData)
        }
    }

    /// The next byte without consuming it.
    pub fn peek(&self) -> Result<u8> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(BencodeError::UnexpectedEnd)
    }

    fn expect(&mut self, byte: u8) -> Result<()> {
        if self.peek()? == byte {
            self.pos += 1;
            Ok(())
        } else {
            Err(BencodeError::UnexpectedByte(self.pos))
        }
    }

    /// Reads a byte string (`<len>:<bytes>`), borrowing its contents.
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let start = self.pos;
        let mut len: usize = 0;
        let mut digits = 0;
        loop {
            let b = self.peek()?;
            if b == b':' {
                break;
            }
            if !b.is_ascii_digit() {
                return Err(BencodeError::UnexpectedByte(self.pos));
            }
            // A leading zero is only canonical for the length 0 itself.
            if digits == 1 && len == 0 {
                return Err(BencodeError::InvalidNumber(start));
            }
            len = len * 10 + usize::from(b - b'0');
            digits += 1;
            // No datagram is anywhere near this long; stopping here also rules out overflow.
            if digits > 7 {
                return Err(BencodeError::InvalidNumber(start));
            }
            self.pos += 1;
        }
        if digits == 0 {
            return Err(BencodeError::UnexpectedByte(self.pos));
        }
        self.pos += 1; // ':'
        let end = self
            .pos
            .checked_add(len)
            .ok_or(BencodeError::UnexpectedEnd)?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(BencodeError::UnexpectedEnd)?;
        self.pos = end;
        Ok(s)
    }

    /// Reads an integer (`i<digits>e`) in the range of `i64`.
    pub fn int(&mut self) -> Result<i64> {
        let start = self.pos;
        self.expect(b'i')?;
        let negative = self.peek()? == b'-';
        if negative {
            self.pos += 1;
        }
        let mut value: i64 = 0;
        let mut digits = 0;
        loop {
            let b = self.peek()?;
            if b == b'e' {
                break;
            }
            if !b.is_ascii_digit() {
                return Err(BencodeError::UnexpectedByte(self.pos));
            }
            if digits == 1 && value == 0 {
                return Err(BencodeError::InvalidNumber(start));
            }
            let d = i64::from(b - b'0');
            value = value
                .checked_mul(10)
                .and_then(|v| {
                    if negative {
                        v.checked_sub(d)
                    } else {
                        v.checked_add(d)
                    }
                })
                .ok_or(BencodeError::InvalidNumber(start))?;
            digits += 1;
            self.pos += 1;
        }
        if digits == 0 || (negative && value == 0) {
            return Err(BencodeError::InvalidNumber(start));
        }
        self.pos += 1; // 'e'
        Ok(value)
    }

    /// Consumes the `d` that opens a dictionary.
    pub fn enter_dict(&mut self) -> Result<()> {
        self.expect(b'd')
    }

    /// Consumes the `l` that opens a list.
    pub fn enter_list(&mut self) -> Result<()> {
        self.expect(b'l')
    }

    /// Inside a dictionary: the next key, or `None` after consuming the closing `e`.
    pub fn next_key(&mut self) -> Result<Option<&'a [u8]>> {
        if self.at_end()? {
            Ok(None)
        } else {
            self.bytes().map(Some)
        }
    }

    /// Inside a list or dictionary: consumes the closing `e` and returns true if it is next.
    pub fn at_end(&mut self) -> Result<bool> {
        if self.peek()? == b'e' {
            self.pos += 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Skips one value of any type; `depth` is the nesting level the value sits at.
    pub fn skip(&mut self, depth: usize) -> Result<()> {
        match self.peek()? {
            b'i' => self.int().map(drop),
            b'0'..=b'9' => self.bytes().map(drop),
            b'l' | b'd' => {
                if depth >= MAX_DEPTH {
                    return Err(BencodeError::TooDeep);
                }
                let is_dict = self.peek()? == b'd';
                self.pos += 1;
                while !self.at_end()? {
                    if is_dict {
                        self.bytes()?;
                    }
                    self.skip(depth + 1)?;
                }
                Ok(())
            }
            _ => Err(BencodeError::UnexpectedByte(self.pos)),
        }
    }

    /// Skips one value and returns its encoded bytes.
    pub fn raw(&mut self, depth: usize) -> Result<&'a [u8]> {
        let start = self.pos;
        self.skip(depth)?;
        Ok(&self.buf[start..self.pos])
    }
}

/// Iterates over a validated bencoded list whose elements are all byte strings.
#[derive(Debug, Clone, Copy)]
pub struct ByteStrList<'a> {
    /// The encoded list, `l` … `e` included.
    raw: &'a [u8],
}

impl<'a> ByteStrList<'a> {
    /// Reads a list at the decoder's position, failing unless every element is a byte string.
    pub fn read(dec: &mut Decoder<'a>) -> Result<Self> {
        let start = dec.pos;
        dec.enter_list()?;
        while !dec.at_end()? {
            dec.bytes()?;
        }
        Ok(ByteStrList {
            raw: &dec.buf[start..dec.pos],
        })
    }

    /// The elements in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut dec = Decoder {
            buf: self.raw,
            pos: 1,
        };
        // Validated in `read`, so the only way to stop is the closing `e`.
        std::iter::from_fn(move || match dec.at_end() {
            Ok(false) => dec.bytes().ok(),
            _ => None,
        })
    }

    /// True when the list has no elements.
    pub fn is_empty(&self) -> bool {
        self.raw.len() <= 2
    }
}

/// Appends bencoded values to a byte vector. Callers write dictionary keys in sorted order.
#[derive(Debug)]
pub struct Encoder<'v> {
    out: &'v mut Vec<u8>,
}

impl<'v> Encoder<'v> {
    /// Writes to the end of `out`.
    pub fn new(out: &'v mut Vec<u8>) -> Self {
        Encoder { out }
    }

    /// Writes a byte string.
    pub fn bytes(&mut self, b: &[u8]) {
        write_decimal(self.out, b.len() as u64);
        self.out.push(b':');
        self.out.extend_from_slice(b);
    }

    /// Writes a byte string assembled from two parts, without a temporary buffer.
    pub fn bytes2(&mut self, a: &[u8], b: &[u8]) {
        write_decimal(self.out, (a.len() + b.len()) as u64);
        self.out.push(b':');
        self.out.extend_from_slice(a);
        self.out.extend_from_slice(b);
    }

    /// Writes the header of a byte string of `len` bytes; the caller appends exactly `len` bytes
    /// with [`Encoder::raw`].
    pub fn bytes_header(&mut self, len: usize) {
        write_decimal(self.out, len as u64);
        self.out.push(b':');
    }

    /// Writes an integer.
    pub fn int(&mut self, v: i64) {
        self.out.push(b'i');
        if v < 0 {
            self.out.push(b'-');
        }
        write_decimal(self.out, v.unsigned_abs());
        self.out.push(b'e');
    }

    /// Opens a dictionary.
    pub fn dict(&mut self) {
        self.out.push(b'd');
    }

    /// Opens a list.
    pub fn list(&mut self) {
        self.out.push(b'l');
    }

    /// Closes the innermost list or dictionary.
    pub fn end(&mut self) {
        self.out.push(b'e');
    }

    /// Appends already-encoded bytes.
    pub fn raw(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }
}

fn write_decimal(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_strings_ints_and_nesting() {
        let mut d = Decoder::new(b"d3:cow3:moo4:spaml1:a1:bei-42ee");
        d.enter_dict().unwrap();
        assert_eq!(d.next_key().unwrap(), Some(&b"cow"[..]));
        assert_eq!(d.bytes().unwrap(), b"moo");
        assert_eq!(d.next_key().unwrap(), Some(&b"spam"[..]));
        let list = ByteStrList::read(&mut d).unwrap();
        assert_eq!(list.iter().collect::<Vec<_>>(), vec![&b"a"[..], &b"b"[..]]);
        assert_eq!(d.int().unwrap(), -42);
        assert_eq!(d.next_key().unwrap(), None);
        d.finish().unwrap();
    }

    #[test]
    fn rejects_non_canonical_and_truncated_input() {
        for bad in [
            &b"i03e"[..],
            b"i-0e",
            b"ie",
            b"i-e",
            b"01:a",
            b"5:abc",
            b"i12",
            b"x",
            b"",
            b"3",
        ] {
            let mut d = Decoder::new(bad);
            let r = match bad.first() {
                Some(b'i') => d.int().map(drop),
                _ => d.bytes().map(drop),
            };
            assert!(r.is_err(), "{:?} accepted", String::from_utf8_lossy(bad));
        }
        assert_eq!(Decoder::new(b"i9223372036854775807e").int(), Ok(i64::MAX));
        assert_eq!(Decoder::new(b"i-9223372036854775808e").int(), Ok(i64::MIN));
        assert!(Decoder::new(b"i9223372036854775808e").int().is_err());
        // A length that claims more than the buffer holds must fail without allocating.
        assert_eq!(
            Decoder::new(b"9999999:ab").bytes(),
            Err(BencodeError::UnexpectedEnd)
        );
        assert!(Decoder::new(b"99999999:ab").bytes().is_err());
    }

    #[test]
    fn depth_is_bounded() {
        let deep: Vec<u8> = std::iter::repeat_n(b'l', MAX_DEPTH + 1)
            .chain(std::iter::repeat_n(b'e', MAX_DEPTH + 1))
            .collect();
        assert_eq!(Decoder::new(&deep).skip(0), Err(BencodeError::TooDeep));
        let ok: Vec<u8> = std::iter::repeat_n(b'l', MAX_DEPTH)
            .chain(std::iter::repeat_n(b'e', MAX_DEPTH))
            .collect();
        let mut d = Decoder::new(&ok);
        d.skip(0).unwrap();
        d.finish().unwrap();
    }

    #[test]
    fn writer_round_trips() {
        let mut out = Vec::new();
        let mut e = Encoder::new(&mut out);
        e.dict();
        e.bytes(b"a");
        e.int(0);
        e.bytes(b"b");
        e.int(-1234567890123);
        e.bytes(b"c");
        e.bytes2(b"xy", b"z");
        e.end();
        assert_eq!(out, b"d1:ai0e1:bi-1234567890123e1:c3:xyze");
        let mut d = Decoder::new(&out);
        d.skip(0).unwrap();
        d.finish().unwrap();
    }
}
