use super::*;
use sha1::{Digest, Sha1};

/// Bencodes an info dict for a multi-file torrent with the given (path components, length).
fn multi_info(files: &[(&[&str], u64)], piece_length: u64, extra: &str) -> Vec<u8> {
    let total: u64 = files.iter().map(|f| f.1).sum();
    let n = total.div_ceil(piece_length.max(1)) as usize;
    let mut s = Vec::new();
    s.extend_from_slice(b"d5:filesl");
    for (path, len) in files {
        s.extend_from_slice(format!("d6:lengthi{len}e4:pathl").as_bytes());
        for c in *path {
            s.extend_from_slice(format!("{}:{}", c.len(), c).as_bytes());
        }
        s.extend_from_slice(b"ee");
    }
    s.extend_from_slice(
        format!(
            "e4:name3:top12:piece lengthi{piece_length}e6:pieces{}:",
            n * 20
        )
        .as_bytes(),
    );
    s.extend(std::iter::repeat_n(7u8, n * 20));
    s.extend_from_slice(extra.as_bytes());
    s.push(b'e');
    s
}

fn wrap(info: &[u8], head: &str) -> Vec<u8> {
    let mut t = format!("d{head}4:info").into_bytes();
    t.extend_from_slice(info);
    t.push(b'e');
    t
}

#[test]
fn created_torrent_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("set");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let a: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    let b: Vec<u8> = (0..40_000u32).map(|i| (i * 13) as u8).collect();
    std::fs::write(root.join("a.bin"), &a).unwrap();
    std::fs::write(root.join("sub/b.bin"), &b).unwrap();
    let opts = CreateOptions {
        piece_length: Some(32 * 1024),
        trackers: vec![
            vec!["http://127.0.0.1:1/announce".into()],
            vec!["udp://127.0.0.1:2".into()],
        ],
        private: false,
        comment: Some("hello".into()),
    };
    let bytes = create_torrent(&root, &opts).unwrap();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(m.info.name, "set");
    assert_eq!(m.info.total_length, 140_000);
    assert_eq!(m.info.piece_count(), 5);
    assert_eq!(m.trackers, opts.trackers);
    assert_eq!(m.comment.as_deref(), Some("hello"));
    assert_eq!(
        m.info.files[1].path,
        std::path::PathBuf::from("set/sub/b.bin")
    );
    assert_eq!(m.info.files[1].offset, 100_000);
    assert_eq!(
        m.info.info_hash.0,
        <[u8; 20]>::from(Sha1::digest(&m.info.raw))
    );
    // Piece hashes cover the concatenated bytes, including the piece spanning both files.
    let all: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
    for (i, chunk) in all.chunks(32 * 1024).enumerate() {
        assert_eq!(
            m.info.pieces[i].0,
            <[u8; 20]>::from(Sha1::digest(chunk)),
            "piece {i}"
        );
    }
    assert_eq!(m.info.pieces_of_file(0), 0..4);
    assert_eq!(m.info.pieces_of_file(1), 3..5);
    assert_eq!(
        m.info.piece_len(crate::types::PieceIndex(4)),
        140_000 - 4 * 32 * 1024
    );
}

#[test]
fn hostile_paths_stay_inside_the_torrent_folder() {
    let info = multi_info(
        &[
            (&["..", "..", "etc", "passwd"], 10),
            (&["/abs"], 10),
            (&["", "x"], 10),
            (&["a:b"], 1),
            (&["a_b"], 1),
        ],
        16384,
        "",
    );
    let i = Info::from_bytes(&info).unwrap();
    let paths: Vec<String> = i
        .files
        .iter()
        .map(|f| f.path.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        paths,
        vec![
            "top/_/_/etc/passwd",
            "top/_abs",
            "top/_/x",
            "top/a_b",
            "top/a_b.1"
        ]
    );
    for f in &i.files {
        assert!(f
            .path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_))));
    }
}

#[test]
fn file_and_folder_with_one_name_is_refused() {
    let info = multi_info(&[(&["a"], 10), (&["a", "b"], 10)], 16384, "");
    assert!(matches!(
        Info::from_bytes(&info),
        Err(MetainfoError::Invalid { field: "path", .. })
    ));
}

#[test]
fn pad_files_are_marked() {
    let mut info = Vec::new();
    let pieces = "x".repeat(40);
    info.extend_from_slice(
        format!("d5:filesld6:lengthi100e4:pathl1:aeed4:attr1:p6:lengthi16284e4:pathl4:.pad5:16284eed6:lengthi5e4:pathl1:beee4:name1:t12:piece lengthi16384e6:pieces40:{pieces}e")
            .as_bytes(),
    );
    let i = Info::from_bytes(&info).unwrap();
    assert!(i.files[1].pad);
    assert!(!i.files[0].pad && !i.files[2].pad);
    assert_eq!(i.files[2].offset, 16384);
    assert_eq!(i.content_length(), 105);
}

#[test]
fn malformed_metainfo_is_a_typed_error() {
    let good = multi_info(&[(&["a"], 10)], 16384, "");
    assert!(Metainfo::from_bytes(&wrap(&good, "")).is_ok());
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"d".to_vec(),
        b"i12e".to_vec(),
        b"d4:infod4:name1:aee".to_vec(),
        wrap(&multi_info(&[(&["a"], 10)], 0, ""), ""),
        wrap(
            &multi_info(&[(&["a"], 100_000)], 16384, "").replace_pieces(3),
            "",
        ),
        b"d4:infod6:lengthi-5e4:name1:a12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaaee"
            .to_vec(),
        b"d4:infod12:meta versioni2e4:name1:a12:piece lengthi16384eee".to_vec(),
        b"d4:infod4:name99999999999:a".to_vec(),
        [b"d4:info".as_slice(), &b"l".repeat(10_000)].concat(),
    ];
    for c in cases {
        let r = Metainfo::from_bytes(&c);
        assert!(
            r.is_err(),
            "accepted {:?}",
            String::from_utf8_lossy(&c[..c.len().min(80)])
        );
    }
    assert_eq!(
        Metainfo::from_bytes(b"d4:infod12:meta versioni2e4:name1:a12:piece lengthi16384eee")
            .unwrap_err(),
        MetainfoError::V2Only
    );
}

#[test]
fn checked_info_refuses_the_wrong_hash() {
    let good = multi_info(&[(&["a"], 10)], 16384, "");
    let h = crate::types::InfoHash(Sha1::digest(&good).into());
    assert!(Info::from_bytes_checked(&good, h).is_ok());
    assert_eq!(
        Info::from_bytes_checked(&good, crate::types::InfoHash([0; 20])).unwrap_err(),
        MetainfoError::HashMismatch
    );
}

#[test]
fn lenient_announce_list() {
    let info = multi_info(&[(&["a"], 10)], 16384, "");
    let t = wrap(
        &info,
        "8:announce9:http://a/13:announce-listl10:http://b/1l9:udp://c:1i5e8:ftp://x/ee",
    );
    let m = Metainfo::from_bytes(&t).unwrap();
    assert_eq!(
        m.trackers,
        vec![
            vec!["http://b/1".to_string()],
            vec!["udp://c:1".to_string()]
        ]
    );
}

trait ReplacePieces {
    fn replace_pieces(self, n: usize) -> Vec<u8>;
}
impl ReplacePieces for Vec<u8> {
    /// Rewrites the `pieces` string to hold `n` hashes, to build inconsistent torrents.
    fn replace_pieces(self, n: usize) -> Vec<u8> {
        let pos = self.windows(7).position(|w| w == b"6:piece").unwrap();
        let mut out = self[..pos].to_vec();
        out.extend_from_slice(format!("6:pieces{}:", n * 20).as_bytes());
        out.extend(std::iter::repeat_n(1u8, n * 20));
        out.push(b'e');
        out
    }
}
