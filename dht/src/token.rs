//! Write tokens for `announce_peer` (BEP 5: "the token ... must be the same as returned in a
//! previous get_peers", tied to the querier's IP, valid for a limited time).
//!
//! A token is a truncated SHA-1 over a secret and the IP. The secret rotates every
//! [`TOKEN_ROTATION`]; tokens made with the current or the previous secret are accepted, so a
//! token lives between one and two rotations (BEP 5: tokens up to ten minutes old are accepted).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha1::{Digest, Sha1};

/// How often the token secret changes.
pub const TOKEN_ROTATION: Duration = Duration::from_secs(5 * 60);

/// Length of the tokens we hand out.
pub const TOKEN_LEN: usize = 8;

/// The current and previous token secrets.
#[derive(Debug, Clone)]
pub struct Tokens {
    current: [u8; 16],
    previous: [u8; 16],
    rotated_at: Instant,
}

impl Tokens {
    /// Fresh secrets.
    pub fn new(rng: &mut impl RngCore, now: Instant) -> Tokens {
        let mut t = Tokens {
            current: [0; 16],
            previous: [0; 16],
            rotated_at: now,
        };
        rng.fill_bytes(&mut t.current);
        rng.fill_bytes(&mut t.previous);
        t
    }

    /// Rotates the secret if it is due. After a long pause both secrets are replaced, so no
    /// token outlives two rotation periods.
    pub fn maybe_rotate(&mut self, rng: &mut impl RngCore, now: Instant) {
        let since = now.saturating_duration_since(self.rotated_at);
        if since < TOKEN_ROTATION {
            return;
        }
        if since >= 2 * TOKEN_ROTATION {
            rng.fill_bytes(&mut self.previous);
        } else {
            self.previous = self.current;
        }
        rng.fill_bytes(&mut self.current);
        self.rotated_at = now;
    }

    /// The token for a querier at `ip`.
    pub fn issue(&self, ip: IpAddr) -> [u8; TOKEN_LEN] {
        mac(&self.current, ip)
    }

    /// True if `token` was issued to `ip` under the current or previous secret.
    pub fn validate(&self, ip: IpAddr, token: &[u8]) -> bool {
        token.len() == TOKEN_LEN
            && (token == mac(&self.current, ip) || token == mac(&self.previous, ip))
    }
}

fn mac(secret: &[u8; 16], ip: IpAddr) -> [u8; TOKEN_LEN] {
    let mut h = Sha1::new();
    h.update(secret);
    match ip {
        IpAddr::V4(v4) => h.update(v4.octets()),
        IpAddr::V6(v6) => h.update(v6.octets()),
    }
    let digest = h.finalize();
    let mut out = [0u8; TOKEN_LEN];
    out.copy_from_slice(&digest[..TOKEN_LEN]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn tokens_survive_one_rotation_not_two() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let t0 = Instant::now();
        let mut tokens = Tokens::new(&mut rng, t0);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let tok = tokens.issue(ip);
        assert!(tokens.validate(ip, &tok));
        assert!(!tokens.validate(other, &tok), "token bound to the IP");
        assert!(!tokens.validate(ip, &tok[..4]));

        tokens.maybe_rotate(&mut rng, t0 + TOKEN_ROTATION - Duration::from_secs(1));
        assert_eq!(tokens.issue(ip), tok, "not yet due");
        tokens.maybe_rotate(&mut rng, t0 + TOKEN_ROTATION);
        assert_ne!(tokens.issue(ip), tok);
        assert!(tokens.validate(ip, &tok), "previous secret still accepted");
        tokens.maybe_rotate(&mut rng, t0 + 2 * TOKEN_ROTATION);
        assert!(
            !tokens.validate(ip, &tok),
            "expired after the second rotation"
        );
    }

    #[test]
    fn long_pause_expires_everything() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let t0 = Instant::now();
        let mut tokens = Tokens::new(&mut rng, t0);
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let tok = tokens.issue(ip);
        tokens.maybe_rotate(&mut rng, t0 + 3 * TOKEN_ROTATION);
        assert!(!tokens.validate(ip, &tok));
        assert!(tokens.validate(ip, &tokens.issue(ip)));
    }
}
