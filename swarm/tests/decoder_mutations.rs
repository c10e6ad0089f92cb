//! On stable Rust, the same properties as the cargo-fuzz targets in fuzz/ (metainfo, magnet,
//! wire, extended, mse), checked over a bounded number of mutations of the fuzz seeds: no input
//! panics, and what decodes re-encodes consistently. `BURROW_FUZZ_ITERS` raises the count.

use burrow_swarm::metainfo::{Magnet, Metainfo};
use burrow_swarm::wire::{ExtHandshake, HolepunchMsg, Message, MetadataMsg, PexMessage};
use bytes::BytesMut;

#[path = "support/mse_exercise.rs"]
mod mse_exercise;

fn seeds(kind: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(kind);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Flips, inserts, deletes and duplicates bytes, and splices in interesting numbers.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.insert(at, rng.next() as u8),
            2 if at < v.len() => {
                v.remove(at);
            }
            3 => {
                let n = [
                    "0",
                    "-1",
                    "18446744073709551617",
                    "4294967296",
                    "99999999",
                    "e",
                    "d",
                    "l",
                ][rng.below(8)];
                v.splice(at..at, n.bytes());
            }
            4 if !v.is_empty() => {
                let s = rng.below(v.len());
                let chunk: Vec<u8> = v[s..(s + rng.below(64)).min(v.len())].to_vec();
                v.splice(at..at, chunk);
            }
            _ => v.truncate(at),
        }
    }
    v
}

fn iterations() -> usize {
    std::env::var("BURROW_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn each(kind: &str, f: impl Fn(&[u8])) {
    let seeds = seeds(kind);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for s in &seeds {
        f(s);
    }
    for _ in 0..iterations() {
        let base = &seeds[rng.below(seeds.len())];
        f(&mutate(&mut rng, base));
    }
}

#[test]
fn metainfo_mutations() {
    each("metainfo", |d| {
        if let Ok(m) = Metainfo::from_bytes(d) {
            assert!(m.info.files.iter().all(|f| f
                .path
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))));
        }
    });
}

#[test]
fn magnet_mutations() {
    each("magnet", |d| {
        if let Ok(m) = Magnet::parse(&String::from_utf8_lossy(d)) {
            assert_eq!(Magnet::parse(&m.to_uri()).unwrap().info_hash, m.info_hash);
        }
    });
}

#[test]
fn wire_mutations() {
    each("wire", |d| {
        let mut buf = BytesMut::from(d);
        while let Ok(Some(m)) = Message::decode(&mut buf) {
            let mut out = BytesMut::new();
            m.encode(&mut out);
            let mut again = out.clone();
            assert_eq!(Message::decode(&mut again).unwrap(), Some(m));
        }
    });
}

#[test]
fn extended_mutations() {
    each("extended", |d| {
        if let Ok(h) = ExtHandshake::decode(d) {
            assert_eq!(ExtHandshake::decode(&h.encode()).unwrap(), h);
        }
        let b = bytes::Bytes::copy_from_slice(d);
        if let Ok(m) = MetadataMsg::decode(&b) {
            assert_eq!(
                MetadataMsg::decode(&bytes::Bytes::from(m.encode())).unwrap(),
                m
            );
        }
        if let Ok(p) = PexMessage::decode(d) {
            assert_eq!(PexMessage::decode(&p.encode()).unwrap(), p);
        }
        if let Ok(h) = HolepunchMsg::decode(d) {
            assert_eq!(HolepunchMsg::decode(&h.encode()).unwrap(), h);
        }
    });
}

#[test]
fn mse_mutations() {
    each("mse", mse_exercise::exercise);
}
