//! KRPC messages (BEP 5 "KRPC Protocol"), with the extension keys this node understands:
//! `want`/`nodes6` (BEP 32), top-level `ip` (BEP 42), `ro` (BEP 43) and `sample_infohashes`
//! (BEP 51).
//!
//! Decoding borrows from the datagram and allocates nothing; one decoded [`Message`] is a handful
//! of slices and small integers. Unknown keys are skipped, known keys with the wrong type or size
//! make the whole message invalid.

mod encode;

use std::net::SocketAddr;

use thiserror::Error;

use crate::bencode::{BencodeError, ByteStrList, Decoder};
use crate::compact::decode_peer;
use crate::id::NodeId;

pub use encode::{
    write_announce_peer, write_error, write_find_node, write_get_peers, write_ping, write_response,
    write_sample_infohashes, ResponseOut,
};

/// Longest transaction ID accepted from others. We echo IDs back, so this bounds what a querier
/// can make us send; real clients use 2–4 bytes.
pub const MAX_TRANSACTION_ID_LEN: usize = 32;

/// The client version sent in the `v` key: two letters naming the client, two bytes of version.
pub const CLIENT_VERSION: [u8; 4] = *b"BW\x00\x01";

/// KRPC error codes (BEP 5 "Errors").
pub mod error_code {
    /// Generic error.
    pub const GENERIC: i64 = 201;
    /// Server error.
    pub const SERVER: i64 = 202;
    /// Protocol error: malformed packet, invalid arguments or bad token.
    pub const PROTOCOL: i64 = 203;
    /// Method unknown.
    pub const METHOD_UNKNOWN: i64 = 204;
}

/// Why a datagram is not a KRPC message we can act on.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Not valid bencode.
    #[error("invalid bencode: {0}")]
    Bencode(#[from] BencodeError),
    /// A key every message of its type must carry is absent.
    #[error("missing key {0}")]
    Missing(&'static str),
    /// A key has the wrong type, size or value.
    #[error("invalid value for key {0}")]
    Invalid(&'static str),
}

/// Query methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `ping`
    Ping,
    /// `find_node`
    FindNode,
    /// `get_peers`
    GetPeers,
    /// `announce_peer`
    AnnouncePeer,
    /// `sample_infohashes` (BEP 51)
    SampleInfohashes,
    /// Any other method name.
    Unknown,
}

impl Method {
    fn from_name(name: &[u8]) -> Method {
        match name {
            b"ping" => Method::Ping,
            b"find_node" => Method::FindNode,
            b"get_peers" => Method::GetPeers,
            b"announce_peer" => Method::AnnouncePeer,
            b"sample_infohashes" => Method::SampleInfohashes,
            _ => Method::Unknown,
        }
    }
}

/// Address families a requester asked for with `want` (BEP 32).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Want {
    /// `n4`: include `nodes`.
    pub n4: bool,
    /// `n6`: include `nodes6`.
    pub n6: bool,
}

/// The arguments of a query (`a`) or the values of a response (`r`): one struct for both,
/// since the keys do not overlap in meaning and the message type is known only at the end.
#[derive(Debug, Clone, Copy, Default)]
pub struct Args<'a> {
    /// `id`: the sender's node ID.
    pub id: Option<NodeId>,
    /// `target` (find_node, sample_infohashes).
    pub target: Option<[u8; 20]>,
    /// `info_hash` (get_peers, announce_peer).
    pub info_hash: Option<[u8; 20]>,
    /// `token` (get_peers response, announce_peer query).
    pub token: Option<&'a [u8]>,
    /// `port` (announce_peer), unvalidated.
    pub port: Option<i64>,
    /// `implied_port` set to a non-zero value.
    pub implied_port: bool,
    /// `want` (BEP 32); `None` when absent.
    pub want: Option<Want>,
    /// `nodes`: compact IPv4 nodes.
    pub nodes: Option<&'a [u8]>,
    /// `nodes6`: compact IPv6 nodes.
    pub nodes6: Option<&'a [u8]>,
    /// `values`: compact peers.
    pub values: Option<ByteStrList<'a>>,
    /// `samples` (BEP 51): concatenated info-hashes.
    pub samples: Option<&'a [u8]>,
    /// `num` (BEP 51): how many info-hashes the responder stores.
    pub num: Option<i64>,
    /// `interval` (BEP 51): seconds before the sample changes.
    pub interval: Option<i64>,
}

/// What kind of message, with its payload.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// `y: q`
    Query {
        /// The method.
        method: Method,
        /// The arguments; `args.id` is always present.
        args: Args<'a>,
    },
    /// `y: r`; `id` is always present.
    Response(Args<'a>),
    /// `y: e`
    Error {
        /// Error code (see [`error_code`]).
        code: i64,
        /// Human-readable message.
        message: &'a [u8],
    },
}

/// One decoded KRPC message, borrowing from the datagram.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// `t`: the transaction ID.
    pub tid: &'a [u8],
    /// The message type and payload.
    pub body: Body<'a>,
    /// `ip` (BEP 42): the address the sender saw us at.
    pub ip: Option<SocketAddr>,
    /// `ro: 1` (BEP 43): the sender is a read-only node.
    pub read_only: bool,
    /// `v`: the sender's client version.
    pub version: Option<&'a [u8]>,
}

impl<'a> Message<'a> {
    /// Decodes one datagram.
    pub fn decode(buf: &'a [u8]) -> Result<Message<'a>, DecodeError> {
        let mut d = Decoder::new(buf);
        d.enter_dict()?;
        let mut tid = None;
        let mut y = None;
        let mut q = None;
        // "a" and "r" fill one struct in place: a message has one or the other, and Args is
        // large enough that copying it around shows up in profiles.
        let mut args = Args::default();
        let (mut has_a, mut has_r) = (false, false);
        let mut e = None;
        let mut ip = None;
        let mut read_only = false;
        let mut version = None;
        while let Some(key) = d.next_key()? {
            match key {
                b"t" => tid = Some(d.bytes()?),
                b"y" => y = Some(d.bytes()?),
                b"q" => q = Some(d.bytes()?),
                b"a" if !has_r => {
                    read_args(&mut d, &mut args)?;
                    has_a = true;
                }
                b"r" if !has_a => {
                    read_args(&mut d, &mut args)?;
                    has_r = true;
                }
                b"e" => e = Some(read_error(&mut d)?),
                b"ip" => ip = decode_peer(d.bytes()?),
                b"ro" => read_only = d.int()? == 1,
                b"v" if d.peek()?.is_ascii_digit() => version = Some(d.bytes()?),
                _ => d.skip(1)?,
            }
        }
        d.finish()?;
        let tid = tid.ok_or(DecodeError::Missing("t"))?;
        if tid.len() > MAX_TRANSACTION_ID_LEN {
            return Err(DecodeError::Invalid("t"));
        }
        let body = match y.ok_or(DecodeError::Missing("y"))? {
            b"q" => {
                let method = Method::from_name(q.ok_or(DecodeError::Missing("q"))?);
                if !has_a {
                    return Err(DecodeError::Missing("a"));
                }
                args.id.ok_or(DecodeError::Missing("id"))?;
                Body::Query { method, args }
            }
            b"r" => {
                if !has_r {
                    return Err(DecodeError::Missing("r"));
                }
                args.id.ok_or(DecodeError::Missing("id"))?;
                Body::Response(args)
            }
            b"e" => {
                let (code, message) = e.ok_or(DecodeError::Missing("e"))?;
                Body::Error { code, message }
            }
            _ => return Err(DecodeError::Invalid("y")),
        };
        Ok(Message {
            tid,
            body,
            ip,
            read_only,
            version,
        })
    }
}

fn id20(d: &mut Decoder<'_>, key: &'static str) -> Result<[u8; 20], DecodeError> {
    <[u8; 20]>::try_from(d.bytes()?).map_err(|_| DecodeError::Invalid(key))
}

fn read_args<'a>(d: &mut Decoder<'a>, args: &mut Args<'a>) -> Result<(), DecodeError> {
    d.enter_dict()?;
    while let Some(key) = d.next_key()? {
        match key {
            b"id" => args.id = Some(NodeId(id20(d, "id")?)),
            b"target" => args.target = Some(id20(d, "target")?),
            b"info_hash" => args.info_hash = Some(id20(d, "info_hash")?),
            b"token" => args.token = Some(d.bytes()?),
            b"port" => args.port = Some(d.int()?),
            b"implied_port" => args.implied_port = d.int()? != 0,
            b"want" => {
                let list = ByteStrList::read(d)?;
                let mut want = Want::default();
                for w in list.iter() {
                    match w {
                        b"n4" => want.n4 = true,
                        b"n6" => want.n6 = true,
                        _ => {}
                    }
                }
                args.want = Some(want);
            }
            b"nodes" => args.nodes = Some(d.bytes()?),
            b"nodes6" => args.nodes6 = Some(d.bytes()?),
            b"values" => args.values = Some(ByteStrList::read(d)?),
            b"samples" => args.samples = Some(d.bytes()?),
            b"num" => args.num = Some(d.int()?),
            b"interval" => args.interval = Some(d.int()?),
            _ => d.skip(2)?,
        }
    }
    Ok(())
}

fn read_error<'a>(d: &mut Decoder<'a>) -> Result<(i64, &'a [u8]), DecodeError> {
    d.enter_list()?;
    if d.at_end()? {
        return Err(DecodeError::Invalid("e"));
    }
    let code = d.int()?;
    let mut message: &[u8] = &[];
    if !d.at_end()? {
        message = d.bytes()?;
        while !d.at_end()? {
            d.skip(2)?;
        }
    }
    Ok((code, message))
}

#[cfg(test)]
mod tests;
