//! The Diffie-Hellman exchange of MSE: generator 2 over the 768-bit prime P of the spec
//! (RFC 2409's first Oakley group), 160-bit private keys, 96-byte big-endian public keys and
//! shared secret.
//!
//! The arithmetic is a fixed-size Montgomery multiplication over twelve 64-bit limbs rather
//! than a big-integer crate: the numbers never change size, so 100 lines without heap or
//! dependencies do the job, and the exponent's bits are processed in constant time.

/// Bytes of a public key or shared secret on the wire.
pub const KEY_LEN: usize = 96;
/// Bytes of a private key (the spec asks for at least 128 bits; 160 is customary).
pub const PRIVATE_KEY_LEN: usize = 20;

const LIMBS: usize = 12;
type Limbs = [u64; LIMBS];

/// P, least significant limb first.
const P: Limbs = [
    0x0000_0000_0009_0563,
    0xf44c_42e9_a63a_3621,
    0xe485_b576_625e_7ec6,
    0x4fe1_356d_6d51_c245,
    0x302b_0a6d_f25f_1437,
    0xef95_19b3_cd3a_431b,
    0x514a_0879_8e34_04dd,
    0x020b_bea6_3b13_9b22,
    0x2902_4e08_8a67_cc74,
    0xc4c6_628b_80dc_1cd1,
    0xc90f_daa2_2168_c234,
    0xffff_ffff_ffff_ffff,
];

/// -P⁻¹ mod 2⁶⁴, by Newton's iteration (each step doubles the correct low bits).
const P_INV: u64 = {
    let mut inv: u64 = 1;
    let mut i = 0;
    while i < 6 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(P[0].wrapping_mul(inv)));
        i += 1;
    }
    inv.wrapping_neg()
};

/// Our half of an exchange: a private exponent and the public key it gives.
#[derive(Clone)]
pub struct KeyPair {
    private: [u8; PRIVATE_KEY_LEN],
    public: [u8; KEY_LEN],
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").finish_non_exhaustive()
    }
}

impl KeyPair {
    /// The key pair for a private exponent (160 random bits in practice).
    pub fn from_private(private: [u8; PRIVATE_KEY_LEN]) -> KeyPair {
        let public = to_bytes(&mod_pow(&from_small(2), &private));
        KeyPair { private, public }
    }

    /// Our public key, `2^private mod P`, as sent on the wire.
    pub fn public(&self) -> &[u8; KEY_LEN] {
        &self.public
    }

    /// The shared secret `remote^private mod P`, or `None` for a remote key outside
    /// [2, P-2]: such keys pin the secret to 0, 1 or P-1 and would let a middleman choose it.
    pub fn shared_secret(&self, remote: &[u8; KEY_LEN]) -> Option<[u8; KEY_LEN]> {
        let y = from_bytes(remote);
        let mut p_minus_1 = P;
        p_minus_1[0] -= 1;
        if less_than(&y, &from_small(2)) || !less_than(&y, &p_minus_1) {
            return None;
        }
        Some(to_bytes(&mod_pow(&y, &self.private)))
    }
}

fn from_small(v: u64) -> Limbs {
    let mut l = [0; LIMBS];
    l[0] = v;
    l
}

fn from_bytes(b: &[u8; KEY_LEN]) -> Limbs {
    let mut l = [0; LIMBS];
    for (i, chunk) in b.rchunks_exact(8).enumerate() {
        l[i] = u64::from_be_bytes(chunk.try_into().expect("8 bytes"));
    }
    l
}

fn to_bytes(l: &Limbs) -> [u8; KEY_LEN] {
    let mut b = [0; KEY_LEN];
    for (i, chunk) in b.rchunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&l[i].to_be_bytes());
    }
    b
}

fn less_than(a: &Limbs, b: &Limbs) -> bool {
    for i in (0..LIMBS).rev() {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
    }
    false
}

/// `a - b` and the borrow out.
fn sub(a: &Limbs, b: &Limbs) -> (Limbs, bool) {
    let mut out = [0; LIMBS];
    let mut borrow = false;
    for i in 0..LIMBS {
        let (d, b1) = a[i].overflowing_sub(b[i]);
        let (d, b2) = d.overflowing_sub(borrow as u64);
        out[i] = d;
        borrow = b1 | b2;
    }
    (out, borrow)
}

/// `(a + a) mod P` for `a < P`.
fn double_mod(a: &Limbs) -> Limbs {
    let mut out = [0; LIMBS];
    let mut carry = 0;
    for i in 0..LIMBS {
        out[i] = (a[i] << 1) | carry;
        carry = a[i] >> 63;
    }
    if carry == 1 || !less_than(&out, &P) {
        out = sub(&out, &P).0;
    }
    out
}

/// Montgomery product `a·b·2⁻⁷⁶⁸ mod P` for `a, b < P` (coarsely integrated operand scanning).
fn mont_mul(a: &Limbs, b: &Limbs) -> Limbs {
    let mut t = [0u64; LIMBS + 2];
    for &ai in a {
        let mut carry = 0u128;
        for j in 0..LIMBS {
            let s = t[j] as u128 + ai as u128 * b[j] as u128 + carry;
            t[j] = s as u64;
            carry = s >> 64;
        }
        let s = t[LIMBS] as u128 + carry;
        t[LIMBS] = s as u64;
        t[LIMBS + 1] = (s >> 64) as u64;

        let m = t[0].wrapping_mul(P_INV);
        let mut carry = (t[0] as u128 + m as u128 * P[0] as u128) >> 64;
        for j in 1..LIMBS {
            let s = t[j] as u128 + m as u128 * P[j] as u128 + carry;
            t[j - 1] = s as u64;
            carry = s >> 64;
        }
        let s = t[LIMBS] as u128 + carry;
        t[LIMBS - 1] = s as u64;
        t[LIMBS] = t[LIMBS + 1] + (s >> 64) as u64;
    }
    let r: Limbs = t[..LIMBS].try_into().expect("12 limbs");
    // The result is below 2P; one conditional subtraction brings it below P.
    let (reduced, borrow) = sub(&r, &P);
    if t[LIMBS] != 0 || !borrow {
        reduced
    } else {
        r
    }
}

/// 2⁷⁶⁸ mod P (Montgomery form of 1) and 2¹⁵³⁶ mod P (converts into Montgomery form).
fn r_and_r2() -> &'static (Limbs, Limbs) {
    static R: std::sync::OnceLock<(Limbs, Limbs)> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        // P > 2⁷⁶⁷, so 2⁷⁶⁸ mod P = 2⁷⁶⁸ - P, which is the two's complement of P.
        let r = sub(&[0; LIMBS], &P).0;
        let mut r2 = r;
        for _ in 0..768 {
            r2 = double_mod(&r2);
        }
        (r, r2)
    })
}

/// `base^exp mod P` for `base < P`, `exp` big-endian. Every exponent bit costs the same
/// work: the multiplication is always done and its result kept or dropped by a mask.
pub(crate) fn mod_pow(base: &Limbs, exp: &[u8]) -> Limbs {
    let (one, r2) = r_and_r2();
    let b = mont_mul(base, r2);
    let mut acc = *one;
    for byte in exp {
        for bit in (0..8).rev() {
            acc = mont_mul(&acc, &acc);
            let with = mont_mul(&acc, &b);
            let mask = ((byte >> bit) & 1) as u64 * u64::MAX;
            for i in 0..LIMBS {
                acc[i] = (with[i] & mask) | (acc[i] & !mask);
            }
        }
    }
    mont_mul(&acc, &from_small(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p_bytes() -> [u8; KEY_LEN] {
        to_bytes(&P)
    }

    #[test]
    fn prime_constants() {
        // The spec gives P in hex; check the limbs spell it and that P passes Fermat's test
        // for a few bases (a mistyped limb would make it composite).
        let hex: String = p_bytes().iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(
            hex,
            "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563"
        );
        assert_eq!(P[0].wrapping_mul(P_INV.wrapping_neg()), 1);
        let mut p_minus_1 = p_bytes();
        p_minus_1[KEY_LEN - 1] -= 1;
        for base in [2, 3, 5, 7, 11] {
            assert_eq!(
                mod_pow(&from_small(base), &p_minus_1),
                from_small(1),
                "base {base}"
            );
        }
    }

    #[test]
    fn small_powers() {
        assert_eq!(mod_pow(&from_small(2), &[10]), from_small(1024));
        assert_eq!(mod_pow(&from_small(3), &[0]), from_small(1));
        assert_eq!(mod_pow(&from_small(7), &[1, 0]), {
            // 7^256 by repeated squaring of plain numbers is too big; use 7^256 = (7^16)^16.
            let x = mod_pow(&from_small(7), &[16]);
            mod_pow(&x, &[16])
        });
        // 2^768 mod P is 2^768 - P.
        let mut e = [0u8; 2];
        e.copy_from_slice(&768u16.to_be_bytes());
        assert_eq!(mod_pow(&from_small(2), &e), sub(&[0; LIMBS], &P).0);
        // (P-1)^2 = 1.
        let mut pm1 = P;
        pm1[0] -= 1;
        assert_eq!(mod_pow(&pm1, &[2]), from_small(1));
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn matches_an_independent_implementation() {
        // Values from Python's arbitrary-precision pow(2, a, P) and pow(2^b mod P, a, P).
        let a: [u8; 20] = std::array::from_fn(|i| i as u8 + 1);
        let pair = KeyPair::from_private(a);
        assert_eq!(
            hex(pair.public()),
            "96e112dab29e8c5272accb9b17b26887ce54a144a4e3b697c7d159b7a817e556b0918db2b4c658e02a87f7e5fb14b18a553e084cbf3dad2d30f16596ccb982d406258c61b30c5c1dae2ddc60bdbd48d79896312aad63238c39e1a633821eb693"
        );
        let other = KeyPair::from_private([0xff; 20]);
        assert_eq!(
            hex(&pair.shared_secret(other.public()).unwrap()),
            "3adb0afff0af5a57448d2c9942ba132cd670d27879b5bf7745c8c4fd2ce1bc68e599e1c7ae211b44220a1ce7c6da8dcef2acd5516b5358089caae45e14b3626c7c824c214a4b4bb0b90f4973d99a368cd092d23c1c46fe2f70f0cc81fe510f31"
        );
    }

    #[test]
    fn shared_secret_agrees() {
        for seed in 1u8..6 {
            let a = KeyPair::from_private([seed; 20]);
            let b = KeyPair::from_private([seed.wrapping_mul(31) ^ 0x5a; 20]);
            let s1 = a.shared_secret(b.public()).unwrap();
            let s2 = b.shared_secret(a.public()).unwrap();
            assert_eq!(s1, s2);
            assert_ne!(s1, [0; KEY_LEN]);
            assert_ne!(a.public(), b.public());
        }
    }

    #[test]
    fn degenerate_remote_keys_refused() {
        let a = KeyPair::from_private([9; 20]);
        let mut k = [0u8; KEY_LEN];
        assert!(a.shared_secret(&k).is_none());
        k[KEY_LEN - 1] = 1;
        assert!(a.shared_secret(&k).is_none());
        k[KEY_LEN - 1] = 2;
        assert!(a.shared_secret(&k).is_some());
        let mut pm1 = p_bytes();
        pm1[KEY_LEN - 1] -= 1;
        assert!(a.shared_secret(&pm1).is_none());
        assert!(a.shared_secret(&p_bytes()).is_none());
        assert!(a.shared_secret(&[0xff; KEY_LEN]).is_none());
        pm1[KEY_LEN - 1] -= 1;
        assert!(a.shared_secret(&pm1).is_some());
    }
}
