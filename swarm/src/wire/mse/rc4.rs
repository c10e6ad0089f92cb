//! RC4, the stream cipher MSE selects with `crypto_select = 0x02`. MSE keys it with 20-byte
//! SHA-1 digests and throws away the first 1024 bytes of keystream, whose bias is known.
//! RC4 is obsolete as cryptography; here it only has to match what other clients send.

/// Keystream bytes MSE discards after keying.
pub const DISCARD: usize = 1024;

/// One direction's RC4 state.
#[derive(Clone)]
pub struct Rc4 {
    s: [u8; 256],
    i: u8,
    j: u8,
}

impl std::fmt::Debug for Rc4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rc4")
    }
}

impl Rc4 {
    /// Plain RC4 keyed with `key` (1 to 256 bytes), keystream from its first byte.
    pub fn new(key: &[u8]) -> Rc4 {
        assert!(
            !key.is_empty() && key.len() <= 256,
            "RC4 key of {} bytes",
            key.len()
        );
        let mut s: [u8; 256] = std::array::from_fn(|i| i as u8);
        let mut j = 0u8;
        for i in 0..256 {
            j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
            s.swap(i, j as usize);
        }
        Rc4 { s, i: 0, j: 0 }
    }

    /// RC4 keyed as MSE does: the first [`DISCARD`] keystream bytes already consumed.
    pub fn mse(key: &[u8; 20]) -> Rc4 {
        let mut rc4 = Rc4::new(key);
        rc4.apply(&mut [0u8; DISCARD]);
        rc4
    }

    /// XORs the next keystream bytes into `buf` (encrypts and decrypts alike).
    pub fn apply(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.i = self.i.wrapping_add(1);
            self.j = self.j.wrapping_add(self.s[self.i as usize]);
            self.s.swap(self.i as usize, self.j as usize);
            let k = self.s[self.i as usize].wrapping_add(self.s[self.j as usize]);
            *b ^= self.s[k as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn published_vectors() {
        for (key, plain, cipher) in [
            (&b"Key"[..], &b"Plaintext"[..], "bbf316e8d940af0ad3"),
            (b"Wiki", b"pedia", "1021bf0420"),
            (b"Secret", b"Attack at dawn", "45a01f645fc35b383552544b9bf5"),
        ] {
            let mut buf = plain.to_vec();
            Rc4::new(key).apply(&mut buf);
            assert_eq!(hex(&buf), cipher);
            Rc4::new(key).apply(&mut buf);
            assert_eq!(buf, plain);
        }
    }

    #[test]
    fn discard_and_chunking() {
        // Keystream bytes 1024..1040 for the key 00 01 .. 13, from Python's `cryptography` ARC4.
        let key: [u8; 20] = std::array::from_fn(|i| i as u8);
        let mut ks = [0u8; 16];
        Rc4::mse(&key).apply(&mut ks);
        assert_eq!(hex(&ks), "cb84e3c95ede7bb7651390078ae97777");
        // Applying in pieces gives the same stream as applying at once.
        let mut whole = [0u8; 100];
        Rc4::mse(&key).apply(&mut whole);
        let mut pieces = [0u8; 100];
        let mut rc4 = Rc4::mse(&key);
        for chunk in pieces.chunks_mut(7) {
            rc4.apply(chunk);
        }
        assert_eq!(whole, pieces);
        assert_eq!(whole[..16], ks);
    }
}
