//! A client of another sidecar's peer listener: sends a command as an
//! OP_MSG over a pooled connection and returns the reply document.
//!
//! The outcome of a forward is one of three: a reply, `NotSent` (nothing
//! reached the peer: safe to run the command here instead), or `Lost` (the
//! request went out and no reply came: the write may or may not have
//! committed there).

use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use bson::{Bson, Document};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::peer_auth::{self, PeerKey};
use super::peer_tls::PeerTls;
use crate::wire::message::encode_op_msg;
use crate::wire::{Frame, Request};

/// How long connecting to a peer may take before the write runs here.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a forwarded command may take. A writer this slow is treated as
/// gone: the caller gets an error, never a hang.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per peer.
const POOL: usize = 64;

/// Array fields that travel as OP_MSG document sequences (as drivers send
/// them), so a 48 MB batch is not one oversized body document.
const SEQUENCES: &[&str] = &["documents", "updates", "deletes"];

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Nothing reached the peer.
    #[error("cannot reach the branch writer at {address}: {reason}")]
    NotSent { address: String, reason: String },
    /// Sent, but no reply: the outcome there is unknown.
    #[error("the branch writer at {address} did not answer: {reason}")]
    Lost { address: String, reason: String },
}

/// A connection to a peer: plain TCP, or TLS over it (`peer_tls`).
trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PeerIo for T {}
type PeerStream = Box<dyn PeerIo>;

/// One peer sidecar and idle connections to it (each one has proved the
/// peer key, when there is one: `peer_auth`).
pub struct Peer {
    pub address: String,
    idle: Mutex<Vec<PeerStream>>,
    next_request: AtomicI32,
    key: Option<PeerKey>,
    tls: Option<PeerTls>,
}

impl Peer {
    pub fn new(address: &str, key: Option<PeerKey>, tls: Option<PeerTls>) -> Peer {
        Peer {
            address: address.to_string(),
            idle: Mutex::new(Vec::new()),
            next_request: AtomicI32::new(1),
            key,
            tls,
        }
    }

    fn not_sent(&self, reason: impl ToString) -> ForwardError {
        ForwardError::NotSent {
            address: self.address.clone(),
            reason: reason.to_string(),
        }
    }

    fn lost(&self, reason: impl ToString) -> ForwardError {
        ForwardError::Lost {
            address: self.address.clone(),
            reason: reason.to_string(),
        }
    }

    /// Sends `command` (with its `$db`) and returns the peer's reply.
    pub async fn forward(&self, command: &Document) -> Result<Document, ForwardError> {
        let message = encode(self.next_request.fetch_add(1, Ordering::Relaxed), command);
        // An idle connection may have been closed by the peer meanwhile: a
        // write that fails on one was not received, so try a fresh one.
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(mut stream) = pooled
            && stream.write_all(&message).await.is_ok()
        {
            return self.finish(stream).await;
        }
        let mut stream = self.connect().await?;
        stream
            .write_all(&message)
            .await
            .map_err(|e| self.not_sent(e))?;
        self.finish(stream).await
    }

    /// A fresh connection that has proved the peer key (nothing forwarded
    /// yet: any failure here is `NotSent`).
    async fn connect(&self) -> Result<PeerStream, ForwardError> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.address))
            .await
            .map_err(|_| self.not_sent("connect timed out"))?
            .map_err(|e| self.not_sent(e))?;
        let _ = tcp.set_nodelay(true);
        let mut stream: PeerStream = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => Box::new(
                tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(tcp))
                    .await
                    .map_err(|_| self.not_sent("TLS handshake timed out"))?
                    .map_err(|e| self.not_sent(format!("TLS handshake: {e}")))?,
            ),
        };
        if let Some(key) = &self.key {
            tokio::time::timeout(CONNECT_TIMEOUT, self.prove(&mut stream, key))
                .await
                .map_err(|_| self.not_sent("peer authentication timed out"))?
                .map_err(|e| self.not_sent(format!("peer authentication: {e}")))?;
        }
        Ok(stream)
    }

    /// The forwarder's side of `peer_auth` on a fresh connection.
    async fn prove(&self, stream: &mut PeerStream, key: &PeerKey) -> Result<(), String> {
        let (me, first) = peer_auth::Forwarder::start();
        let reply = self.round_trip(stream, &first).await?;
        let second = me.respond(key, &reply)?;
        let reply = self.round_trip(stream, &second).await?;
        peer_auth::Forwarder::finish(&reply)
    }

    async fn round_trip(
        &self,
        stream: &mut PeerStream,
        command: &Document,
    ) -> Result<Document, String> {
        let message = encode(self.next_request.fetch_add(1, Ordering::Relaxed), command);
        stream
            .write_all(&message)
            .await
            .map_err(|e| e.to_string())?;
        read_reply(stream).await
    }

    /// Reads the reply on `stream` and pools the connection again.
    async fn finish(&self, mut stream: PeerStream) -> Result<Document, ForwardError> {
        let reply = tokio::time::timeout(REPLY_TIMEOUT, read_reply(&mut stream))
            .await
            .map_err(|_| self.lost("no reply in time"))?
            .map_err(|e| self.lost(e))?;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < POOL {
            idle.push(stream);
        }
        Ok(reply)
    }
}

/// One reply document from `stream`.
async fn read_reply(stream: &mut PeerStream) -> Result<Document, String> {
    let mut buf = BytesMut::with_capacity(4096);
    let frame = loop {
        if let Some(frame) = Frame::decode(&mut buf).map_err(|e| e.to_string())? {
            break frame;
        }
        if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("the connection closed".into());
        }
    };
    Ok(Request::parse(&frame).map_err(|e| e.to_string())?.command)
}

/// `command` as an OP_MSG, its statement arrays as document sequences.
fn encode(request_id: i32, command: &Document) -> Vec<u8> {
    let mut body = Document::new();
    let mut sequences: Vec<(&str, Vec<Document>)> = Vec::new();
    for (key, value) in command {
        match (SEQUENCES.iter().find(|s| **s == key), value) {
            (Some(name), Bson::Array(items))
                if items.iter().all(|i| matches!(i, Bson::Document(_))) =>
            {
                let docs = items
                    .iter()
                    .filter_map(|i| i.as_document().cloned())
                    .collect();
                sequences.push((name, docs));
            }
            _ => {
                body.insert(key.clone(), value.clone());
            }
        }
    }
    encode_op_msg(request_id, 0, &body, &sequences)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn statement_arrays_travel_as_sequences_and_parse_back_whole() {
        let cmd = doc! {
            "insert": "c",
            "documents": [{"_id": 1}, {"_id": 2}],
            "ordered": false,
            "$db": "app",
        };
        let bytes = encode(7, &cmd);
        let mut buf = BytesMut::from(&bytes[..]);
        let frame = Frame::decode(&mut buf).unwrap().unwrap();
        let req = Request::parse(&frame).unwrap();
        assert_eq!(req.db.as_deref(), Some("app"));
        assert_eq!(
            req.command.get_array("documents").unwrap().len(),
            2,
            "{:?}",
            req.command
        );
        assert!(!req.command.get_bool("ordered").unwrap());
    }
}
