//! Raw wire-protocol behaviour: malformed input closes only its own
//! connection; retryable writes are answered, not applied twice; w:0
//! (moreToCome) writes are applied without a reply.

use crate::common;

use argon_sidecar::wire::message::{encode_op_msg, flags};
use bson::{doc, spec::BinarySubtype};
use common::{RawClient, TestServer};

async fn still_served(server: &TestServer) {
    let mut c = RawClient::connect(server.addr).await;
    let reply = c.command(doc! {"ping": 1, "$db": "admin"}).await;
    assert_eq!(reply.get_f64("ok").ok(), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_only_their_connection() {
    let server = TestServer::start().await;
    let mut holdout = RawClient::connect(server.addr).await;
    let bad_inputs: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        (60_000_000i32).to_le_bytes().to_vec(),
        (-5i32).to_le_bytes().to_vec(),
        {
            let mut m = encode_op_msg(1, 0, &doc! {"ping": 1, "$db": "admin"}, &[]);
            m[16] = 0xff; // unknown required flag bits
            m
        },
        {
            let mut m = encode_op_msg(
                1,
                flags::CHECKSUM_PRESENT,
                &doc! {"ping": 1, "$db": "admin"},
                &[],
            );
            let n = m.len();
            m[n - 2] ^= 1;
            m
        },
        {
            let mut m = encode_op_msg(1, 0, &doc! {"ping": 1, "$db": "admin"}, &[]);
            m[12] = 0x55; // unknown opcode
            m
        },
        {
            let mut m = encode_op_msg(1, 0, &doc! {"ping": 1, "$db": "admin"}, &[]);
            m[21] = 0x7f; // BSON length lies
            m
        },
    ];
    for bytes in bad_inputs {
        let mut c = RawClient::connect(server.addr).await;
        c.send_bytes(&bytes).await.unwrap();
        assert!(
            c.read_reply().await.is_none(),
            "the server closes a connection that sent {:?}",
            &bytes[..bytes.len().min(24)]
        );
        still_served(&server).await;
    }
    // a truncated frame, then the client goes away
    {
        let mut c = RawClient::connect(server.addr).await;
        let m = encode_op_msg(1, 0, &doc! {"ping": 1, "$db": "admin"}, &[]);
        c.send_bytes(&m[..m.len() - 3]).await.unwrap();
    }
    still_served(&server).await;
    let reply = holdout.command(doc! {"ping": 1, "$db": "admin"}).await;
    assert_eq!(
        reply.get_f64("ok").unwrap(),
        1.0,
        "an unrelated connection is untouched"
    );
    assert!(server.metrics.protocol_errors.get() >= 7);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_errors_are_replies_with_codes() {
    let server = TestServer::start().await;
    let mut c = RawClient::connect(server.addr).await;
    let r = c.command(doc! {"frobnicate": 1, "$db": "x"}).await;
    assert_eq!(
        (r.get_i32("code").unwrap(), r.get_str("codeName").unwrap()),
        (59, "CommandNotFound")
    );
    let r = c
        .command(doc! {"find": "c", "filter": {"a": {"$bogus": 1}}, "$db": "x"})
        .await;
    assert_eq!(r.get_i32("code").unwrap(), 2);
    assert!(r.get_str("errmsg").unwrap().contains("$bogus"));
    let r = c.command(doc! {"ping": 1}).await;
    assert_eq!(r.get_i32("code").unwrap(), 9, "no $db: {r}");
    let r = c
        .command(doc! {"insert": "c", "documents": [{"_id": [1]}], "$db": "x"})
        .await;
    assert_eq!(r.get_array("writeErrors").unwrap().len(), 1);
    let r = c.command(doc! {"find": "c", "$db": "x~"}).await;
    assert_eq!(r.get_i32("code").unwrap(), 73);
    // document sequences are merged into the command
    let bytes = encode_op_msg(
        9,
        0,
        &doc! {"insert": "seq", "$db": "x"},
        &[("documents", vec![doc! {"_id": 1}, doc! {"_id": 2}])],
    );
    c.send_bytes(&bytes).await.unwrap();
    let r = c.read_reply().await.unwrap();
    assert_eq!(
        r.get_i64("n")
            .or_else(|_| r.get_i32("n").map(i64::from))
            .unwrap(),
        2
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_write_is_not_applied_twice() {
    let server = TestServer::start().await;
    let mut c = RawClient::connect(server.addr).await;
    let lsid = doc! {"id": bson::Binary { subtype: BinarySubtype::Uuid, bytes: vec![7; 16] }};
    let cmd = doc! {"update": "c", "updates": [{"q": {"_id": 1}, "u": {"$inc": {"n": 1}}, "upsert": true}], "lsid": lsid.clone(), "txnNumber": 1i64, "$db": "x"};
    let first = c.command(cmd.clone()).await;
    let second = c.command(cmd).await;
    assert_eq!(first, second);
    let next = doc! {"update": "c", "updates": [{"q": {"_id": 1}, "u": {"$inc": {"n": 1}}}], "lsid": lsid, "txnNumber": 2i64, "$db": "x"};
    c.command(next).await;
    let r = c
        .command(doc! {"find": "c", "filter": {"_id": 1}, "$db": "x"})
        .await;
    let d = r
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(d.get_i32("n").unwrap(), 2, "txn 1 applied once, txn 2 once");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_writes_are_applied() {
    let server = TestServer::start().await;
    let mut c = RawClient::connect(server.addr).await;
    let bytes = encode_op_msg(
        5,
        flags::MORE_TO_COME,
        &doc! {"insert": "w0", "documents": [{"_id": 1}], "writeConcern": {"w": 0}, "$db": "x"},
        &[],
    );
    c.send_bytes(&bytes).await.unwrap();
    // Requests on one connection are answered in order, so this count sees the write.
    let r = c.command(doc! {"count": "w0", "$db": "x"}).await;
    assert_eq!(r.get_i32("n").unwrap(), 1, "an int32, as mongod sends it");
    server.stop().await;
}
