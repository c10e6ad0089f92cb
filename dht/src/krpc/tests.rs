use std::net::SocketAddr;

use super::*;
use crate::compact::NodeInfo;

const ID_A: &[u8; 20] = b"abcdefghij0123456789";
const ID_B: &[u8; 20] = b"mnopqrstuvwxyz123456";

#[test]
fn decodes_bep5_examples() {
    let ping =
        Message::decode(b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe").unwrap();
    assert_eq!(ping.tid, b"aa");
    match ping.body {
        Body::Query {
            method: Method::Ping,
            args,
        } => assert_eq!(args.id, Some(NodeId(*ID_A))),
        other => panic!("{other:?}"),
    }

    let resp = Message::decode(b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re").unwrap();
    assert!(matches!(resp.body, Body::Response(a) if a.id == Some(NodeId(*ID_B))));

    let err = Message::decode(b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee").unwrap();
    match err.body {
        Body::Error { code, message } => {
            assert_eq!(code, 201);
            assert_eq!(message, b"A Generic Error Ocurred");
        }
        other => panic!("{other:?}"),
    }

    let gp = Message::decode(
        b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re",
    )
    .unwrap();
    let Body::Response(args) = gp.body else {
        panic!()
    };
    assert_eq!(args.token, Some(&b"aoeusnth"[..]));
    let values: Vec<_> = args.values.unwrap().iter().collect();
    assert_eq!(values, vec![&b"axje.u"[..], &b"idhtnm"[..]]);

    let ann = Message::decode(
        b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe",
    )
    .unwrap();
    let Body::Query {
        method: Method::AnnouncePeer,
        args,
    } = ann.body
    else {
        panic!()
    };
    assert!(args.implied_port);
    assert_eq!(args.port, Some(6881));
    assert_eq!(args.info_hash, Some(*ID_B));
}

#[test]
fn extension_keys() {
    let m = Message::decode(
        b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz1234564:wantl2:n42:n62:xxee1:q9:find_node2:roi1e1:t1:x1:v4:LT\x01\x021:y1:qe",
    )
    .unwrap();
    assert!(m.read_only);
    assert_eq!(m.version, Some(&b"LT\x01\x02"[..]));
    let Body::Query {
        method: Method::FindNode,
        args,
    } = m.body
    else {
        panic!()
    };
    assert_eq!(args.want, Some(Want { n4: true, n6: true }));
    assert_eq!(args.target, Some(*ID_B));

    let r = Message::decode(
        b"d2:ip6:\x01\x02\x03\x04\x1a\xe11:rd2:id20:abcdefghij0123456789e1:t1:x1:y1:re",
    )
    .unwrap();
    assert_eq!(r.ip, Some("1.2.3.4:6881".parse().unwrap()));

    let unknown =
        Message::decode(b"d1:ad2:id20:abcdefghij0123456789e1:q3:foo1:t1:x1:y1:qe").unwrap();
    assert!(matches!(
        unknown.body,
        Body::Query {
            method: Method::Unknown,
            ..
        }
    ));
}

#[test]
fn rejects_bad_messages() {
    let cases: &[(&[u8], DecodeError)] = &[
        (b"d1:q4:ping1:t2:aa1:y1:qe", DecodeError::Missing("a")),
        (b"d1:ade1:q4:ping1:t2:aa1:y1:qe", DecodeError::Missing("id")),
        (
            b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe",
            DecodeError::Invalid("id"),
        ),
        (
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:y1:qe",
            DecodeError::Missing("t"),
        ),
        (
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:ze",
            DecodeError::Invalid("y"),
        ),
        (
            b"d1:rd2:id20:abcdefghij0123456789e1:t2:aa1:y1:reXX",
            DecodeError::Bencode(BencodeError::TrailingData),
        ),
        (
            b"d1:rd2:id20:abcdefghij0123456789e1:t2:aa1:y1:r",
            DecodeError::Bencode(BencodeError::UnexpectedEnd),
        ),
        (
            b"l1:ae",
            DecodeError::Bencode(BencodeError::UnexpectedByte(0)),
        ),
        (b"d1:ele1:t1:x1:y1:ee", DecodeError::Invalid("e")),
        (
            b"d1:rd2:id20:abcdefghij01234567894:port1:xe1:t1:x1:y1:re",
            DecodeError::Bencode(BencodeError::UnexpectedByte(38)),
        ),
    ];
    for (input, want) in cases {
        match Message::decode(input) {
            Err(e) => assert_eq!(e, *want, "{}", String::from_utf8_lossy(input)),
            Ok(m) => panic!("{}: accepted as {m:?}", String::from_utf8_lossy(input)),
        }
    }
    // An error list with only a code is accepted (the message is optional in practice).
    assert!(matches!(
        Message::decode(b"d1:eli201ee1:t1:x1:y1:ee").unwrap().body,
        Body::Error { code: 201, .. }
    ));
    let long_tid = format!(
        "d1:rd2:id20:abcdefghij0123456789e1:t{}:{}1:y1:re",
        33,
        "x".repeat(33)
    );
    assert_eq!(
        Message::decode(long_tid.as_bytes()).unwrap_err(),
        DecodeError::Invalid("t")
    );
}

#[test]
fn queries_round_trip() {
    let id = NodeId(*ID_A);
    let target = *ID_B;
    let mut out = Vec::new();
    write_find_node(
        &mut out,
        b"\x00\x01\x02\x03",
        &id,
        &target,
        Some(Want {
            n4: true,
            n6: false,
        }),
        true,
    );
    let m = Message::decode(&out).unwrap();
    assert_eq!(m.tid, b"\x00\x01\x02\x03");
    assert!(m.read_only);
    assert_eq!(m.version, Some(&CLIENT_VERSION[..]));
    let Body::Query {
        method: Method::FindNode,
        args,
    } = m.body
    else {
        panic!()
    };
    assert_eq!(args.id, Some(id));
    assert_eq!(args.target, Some(target));
    assert_eq!(
        args.want,
        Some(Want {
            n4: true,
            n6: false
        })
    );

    out.clear();
    write_announce_peer(&mut out, b"tt", &id, &target, 51413, true, b"tok", false);
    let m = Message::decode(&out).unwrap();
    assert!(!m.read_only);
    let Body::Query {
        method: Method::AnnouncePeer,
        args,
    } = m.body
    else {
        panic!()
    };
    assert_eq!(
        (args.port, args.implied_port, args.token),
        (Some(51413), true, Some(&b"tok"[..]))
    );

    out.clear();
    write_ping(&mut out, b"p", &id, false);
    assert!(matches!(
        Message::decode(&out).unwrap().body,
        Body::Query {
            method: Method::Ping,
            ..
        }
    ));
    out.clear();
    write_get_peers(&mut out, b"g", &id, &target, None, false);
    assert!(
        matches!(Message::decode(&out).unwrap().body, Body::Query { method: Method::GetPeers, args } if args.info_hash == Some(target) && args.want.is_none())
    );
    out.clear();
    write_sample_infohashes(&mut out, b"s", &id, &target, false);
    assert!(matches!(
        Message::decode(&out).unwrap().body,
        Body::Query {
            method: Method::SampleInfohashes,
            ..
        }
    ));
}

#[test]
fn responses_round_trip() {
    let id = NodeId(*ID_A);
    let n4 = [NodeInfo {
        id: NodeId([7; 20]),
        addr: "10.0.0.7:7".parse().unwrap(),
    }];
    let n6 = [NodeInfo {
        id: NodeId([8; 20]),
        addr: "[fd00::8]:8".parse().unwrap(),
    }];
    let peers: [SocketAddr; 2] = ["1.1.1.1:1".parse().unwrap(), "2.2.2.2:2".parse().unwrap()];
    let samples = [[9u8; 20], [10u8; 20]];
    let requester: SocketAddr = "5.6.7.8:9".parse().unwrap();
    let r = ResponseOut {
        requester: Some(requester),
        interval: Some(60),
        nodes: Some(&n4),
        nodes6: Some(&n6),
        num: Some(2),
        samples: Some(&samples),
        token: Some(b"secret"),
        values: Some(&peers),
    };
    let mut out = Vec::new();
    write_response(&mut out, b"rt", &id, &r);
    let m = Message::decode(&out).unwrap();
    assert_eq!(m.ip, Some(requester));
    let Body::Response(a) = m.body else { panic!() };
    assert_eq!(a.id, Some(id));
    assert_eq!(a.interval, Some(60));
    assert_eq!(a.num, Some(2));
    assert_eq!(
        crate::compact::decode_nodes(a.nodes.unwrap(), false).collect::<Vec<_>>(),
        n4
    );
    assert_eq!(
        crate::compact::decode_nodes(a.nodes6.unwrap(), true).collect::<Vec<_>>(),
        n6
    );
    assert_eq!(a.samples.unwrap().len(), 40);
    assert_eq!(a.token, Some(&b"secret"[..]));
    let got: Vec<_> = a
        .values
        .unwrap()
        .iter()
        .filter_map(crate::compact::decode_peer)
        .collect();
    assert_eq!(got, peers);

    out.clear();
    write_error(
        &mut out,
        b"e1",
        error_code::PROTOCOL,
        "bad token",
        Some(requester),
    );
    let m = Message::decode(&out).unwrap();
    assert!(matches!(
        m.body,
        Body::Error {
            code: 203,
            message: b"bad token"
        }
    ));
    assert_eq!(m.ip, Some(requester));
}
