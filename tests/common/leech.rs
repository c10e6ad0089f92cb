//! A scripted leecher speaking the peer wire protocol (BEP 3) from scratch, independent of
//! burrow's own codec: it downloads every block of a torrent exactly once from one peer,
//! checks each piece against its SHA-1, and can leave the moment the last block arrives.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use sha1::{Digest, Sha1};

/// What the leecher knows of the torrent.
pub struct LeechTorrent {
    pub info_hash: [u8; 20],
    pub piece_length: u32,
    pub total_length: u64,
    pub piece_hashes: Vec<[u8; 20]>,
}

const BLOCK: u32 = 16 * 1024;

fn read_msg(s: &mut TcpStream) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 {
        return Ok(None);
    }
    assert!(len <= 1 << 20, "message of {len} bytes");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(Some((body[0], body[1..].to_vec())))
}

fn send_msg(s: &mut TcpStream, id: u8, payload: &[u8]) {
    let mut m = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    m.push(id);
    m.extend_from_slice(payload);
    s.write_all(&m).unwrap();
}

/// Downloads the whole torrent from `peer`, `pipeline` requests at a time, and returns its
/// bytes. With `reset`, the connection is reset (not closed in order) right after the last
/// block: the peer learns it is gone at once.
pub fn leech_all(peer: SocketAddr, t: &LeechTorrent, pipeline: usize, reset: bool) -> Vec<u8> {
    let mut s = TcpStream::connect(peer).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut hs = vec![19u8];
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0u8; 8]);
    hs.extend_from_slice(&t.info_hash);
    hs.extend_from_slice(b"-XX0001-scriptedleech");
    s.write_all(&hs[..68]).unwrap();
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs).unwrap();
    assert_eq!(
        &theirs[28..48],
        &t.info_hash,
        "peer answered for another torrent"
    );
    send_msg(&mut s, 2, &[]); // interested
    let mut blocks = Vec::new();
    let mut off = 0u64;
    while off < t.total_length {
        let piece = (off / t.piece_length as u64) as u32;
        let begin = (off % t.piece_length as u64) as u32;
        let piece_end = ((piece as u64 + 1) * t.piece_length as u64).min(t.total_length);
        let len = (BLOCK as u64).min(piece_end - off) as u32;
        blocks.push((piece, begin, len));
        off += len as u64;
    }
    let mut data = vec![0u8; t.total_length as usize];
    let mut next = 0;
    let mut outstanding = 0;
    let mut received = 0;
    let mut unchoked = false;
    while received < blocks.len() {
        if unchoked {
            while outstanding < pipeline && next < blocks.len() {
                let (p, b, l) = blocks[next];
                let mut q = p.to_be_bytes().to_vec();
                q.extend_from_slice(&b.to_be_bytes());
                q.extend_from_slice(&l.to_be_bytes());
                send_msg(&mut s, 6, &q);
                next += 1;
                outstanding += 1;
            }
        }
        let Some((id, body)) = read_msg(&mut s).unwrap() else {
            continue;
        };
        match id {
            0 => panic!("choked in the middle of the download"),
            1 => unchoked = true,
            7 => {
                let p = u32::from_be_bytes(body[0..4].try_into().unwrap()) as u64;
                let b = u32::from_be_bytes(body[4..8].try_into().unwrap()) as u64;
                let at = (p * t.piece_length as u64 + b) as usize;
                data[at..at + body.len() - 8].copy_from_slice(&body[8..]);
                outstanding -= 1;
                received += 1;
            }
            _ => {}
        }
    }
    if reset {
        // Linger 0: close sends RST, and queued data is thrown away.
        let sock = socket2::SockRef::from(&s);
        sock.set_linger(Some(Duration::ZERO)).unwrap();
    }
    drop(s);
    for (i, h) in t.piece_hashes.iter().enumerate() {
        let start = i * t.piece_length as usize;
        let end = (start + t.piece_length as usize).min(data.len());
        assert_eq!(
            Sha1::digest(&data[start..end]).as_slice(),
            h,
            "piece {i} failed its hash"
        );
    }
    data
}
