//! Raw bytes over real TCP against the real server: the wire behaviour the
//! spec requires, and a test for each defect of the reference server.

mod common;

use std::time::Duration;

use common::tcp::*;
use msglog::proto::{records, Frame, Record};
use tokio::io::AsyncWriteExt;

const ACK: u8 = 0x00;
const NAK: u8 = 0xFF;

fn rec(name: &[u8], message: &[u8]) -> Record {
    Record {
        name: name.to_vec(),
        message: message.to_vec(),
    }
}

// --- The original client's six behaviours, byte for byte as it sends them ---

#[tokio::test]
async fn original_suite_connect_message_two_messages_disconnect() {
    let h = Harness::start().await;
    let mut s = h.connect().await;
    s.write_all(&frame(Frame::Name(b"MyTestCase")))
        .await
        .unwrap();
    assert_eq!(read_n(&mut s, 1).await, [ACK]);
    s.write_all(&frame(Frame::Pass(b"A"))).await.unwrap();
    assert_eq!(read_n(&mut s, 1).await, [ACK]);
    for m in [
        &b"Hello!"[..],
        b"I can send multiple messages without reconnecting.",
    ] {
        s.write_all(&frame(Frame::Msg(m))).await.unwrap();
        assert_eq!(read_n(&mut s, 1).await, [ACK]);
    }
    // The original client's CLOSE: the single byte 0x04.
    assert_eq!(exchange_until_close(&mut s, &[0x04]).await, [ACK]);
    assert_eq!(
        h.log_text(),
        "[MyTestCase]: Hello!\r\n[MyTestCase]: I can send multiple messages without reconnecting.\r\n"
    );
}

#[tokio::test]
async fn original_suite_rejected_password() {
    let h = Harness::start().await;
    let mut s = h.connect().await;
    let replies =
        exchange_until_close(&mut s, &frames(&[Frame::Name(b"u"), Frame::Pass(b"B")])).await;
    assert_eq!(replies, [ACK, NAK]);
}

#[tokio::test]
async fn original_suite_reconnect_under_new_name() {
    let h = Harness::start().await;
    for name in [&b"MyUser"[..], b"MyOtherUser"] {
        let mut s = h.connect().await;
        let mut bytes = login(name);
        bytes.extend(frame(Frame::Msg(b"back")));
        bytes.push(0x04);
        assert_eq!(exchange_until_close(&mut s, &bytes).await, [ACK; 4]);
    }
    assert_eq!(h.log_text(), "[MyUser]: back\r\n[MyOtherUser]: back\r\n");
}

#[tokio::test]
async fn original_suite_ten_clients_at_once() {
    let h = Harness::start().await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let addr = h.addr();
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = format!("user{i}");
            let mut bytes = login(name.as_bytes());
            bytes.extend(frame(Frame::Msg(b"hi")));
            bytes.push(0x04);
            exchange_until_close(&mut s, &bytes).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), [ACK; 4]);
    }
    let mut names: Vec<_> = records(&h.log()).map(|r| r.unwrap().name).collect();
    names.sort();
    let mut expected: Vec<_> = (0..10).map(|i| format!("user{i}").into_bytes()).collect();
    expected.sort();
    assert_eq!(names, expected);
}

// --- Framing over the wire ---

//= spec/protocol.md#deviations
//= type=test
//# A frame that arrives in pieces MUST be processed as if it had arrived whole.
#[tokio::test]
async fn frames_one_byte_at_a_time() {
    let h = Harness::start().await;
    let mut s = h.connect().await;
    let mut bytes = login(b"slow");
    bytes.extend(frame(Frame::Msg(b"drip drip")));
    bytes.push(0x04);
    for b in &bytes {
        s.write_all(std::slice::from_ref(b)).await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(read_to_end(&mut s).await, [ACK; 4]);
    assert_eq!(h.log_text(), "[slow]: drip drip\r\n");
}

#[tokio::test]
async fn frames_split_tag_length_payload_without_waiting() {
    // Like the original C test client: NAME, PASS, MSG back to back, each
    // frame in three writes (tag, length, payload), no waiting for replies.
    let h = Harness::start().await;
    let mut s = h.connect().await;
    for f in [
        Frame::Name(b"split"),
        Frame::Pass(b"A"),
        Frame::Msg(b"in three parts"),
    ] {
        let bytes = frame(f);
        for part in [&bytes[..1], &bytes[1..3], &bytes[3..]] {
            s.write_all(part).await.unwrap();
            s.flush().await.unwrap();
        }
    }
    assert_eq!(read_n(&mut s, 3).await, [ACK; 3]);
    assert_eq!(h.log_text(), "[split]: in three parts\r\n");
}

//= spec/protocol.md#acknowledgement
//= type=test
//# The server MUST send the 0x00 for a MSG only after the write(2) that
//# appends its record to the log has returned.
#[tokio::test]
async fn pipelined_messages_are_acked_in_order_after_they_are_written() {
    let h = Harness::start().await;
    let mut s = h.connect().await;
    let mut bytes = login(b"pipe");
    let messages: Vec<String> = (0..500).map(|i| format!("message {i}")).collect();
    for m in &messages {
        bytes.extend(frame(Frame::Msg(m.as_bytes())));
    }
    s.write_all(&bytes).await.unwrap();
    assert_eq!(read_n(&mut s, 502).await, vec![ACK; 502]);
    // Every ack was sent after its record was written: all are there now.
    let got: Vec<_> = records(&h.log()).map(|r| r.unwrap()).collect();
    let want: Vec<_> = messages
        .iter()
        .map(|m| rec(b"pipe", m.as_bytes()))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn maximal_message_of_65535_bytes() {
    let h = Harness::start().await;
    let mut s = h.connect().await;
    let message: Vec<u8> = (0..65_535u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut bytes = login(b"big");
    bytes.extend(frame(Frame::Msg(&message)));
    bytes.push(0x04);
    assert_eq!(exchange_until_close(&mut s, &bytes).await, [ACK; 4]);
    assert_eq!(
        records(&h.log()).map(|r| r.unwrap()).collect::<Vec<_>>(),
        [rec(b"big", &message)]
    );
}

//= spec/protocol.md#end-of-stream
//= type=test
//# If the stream ends in the middle of a frame, the server MUST
//# discard the partial frame without replying or writing to the log.
#[tokio::test]
async fn end_of_stream_mid_frame_writes_nothing() {
    let h = Harness::start().await;
    for cut in [1usize, 2, 3, 8] {
        let mut s = h.connect().await;
        let mut bytes = login(b"cut");
        let msg = frame(Frame::Msg(b"never complete"));
        bytes.extend_from_slice(&msg[..cut]);
        s.write_all(&bytes).await.unwrap();
        s.shutdown().await.unwrap();
        assert_eq!(read_to_end(&mut s).await, [ACK, ACK], "cut at {cut}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.log(), b"");
}

// --- Defects of the reference server, each shown absent ---

//= spec/protocol.md#states
//= type=test
//# The server MUST reject a NAME, PASS or MSG frame whose tag is not the
//# one the current state expects.
#[tokio::test]
async fn msg_sent_first_is_not_taken_as_the_name() {
    let h = Harness::start().await;
    let mut s = h.connect().await;
    let replies = exchange_until_close(&mut s, &frame(Frame::Msg(b"sneaky"))).await;
    assert_eq!(replies, [NAK]);
    assert_eq!(h.log(), b"");
}

//= spec/protocol.md#unknown-tags
//= type=test
//# The server MUST reply 0xFF to a frame with an unknown tag.
#[tokio::test]
async fn tags_above_six_get_a_clear_failure() {
    let h = Harness::start().await;
    for tag in [0u8, 5, 6, 7, 200, 255] {
        let mut s = h.connect().await;
        let mut bytes = login(b"u");
        bytes.extend([tag, 1, 0, b'x']);
        assert_eq!(
            exchange_until_close(&mut s, &bytes).await,
            [ACK, ACK, NAK],
            "tag {tag}"
        );
    }
}

//= spec/protocol.md#close
//= type=test
//# The server MUST accept CLOSE in every state that is not closed, reply
//# 0x00, and then close the connection.
#[tokio::test]
async fn close_is_confirmed_and_closes_in_every_state() {
    let h = Harness::start().await;
    let prefixes = [Vec::new(), frame(Frame::Name(b"u")), login(b"u")];
    for (acks_before, prefix) in prefixes.into_iter().enumerate() {
        let mut s = h.connect().await;
        let mut bytes = prefix;
        bytes.push(0x04);
        let mut want = vec![ACK; acks_before];
        want.push(ACK);
        assert_eq!(exchange_until_close(&mut s, &bytes).await, want);
    }
}

//= spec/protocol.md#graceful-close
//= type=test
//# After its last reply the server MUST shut down its sending side and
//# keep reading until the client's end of stream or a bounded time, so that
//# the client can read that reply.
#[tokio::test]
async fn close_with_a_length_after_it_is_close_then_ignored_bytes() {
    // The reference logged a 0x04 frame with a length as a message and kept
    // the connection open. Here it is CLOSE; the rest is never processed, and
    // the client still reads the confirmation although it sent more.
    let h = Harness::start().await;
    let mut s = h.connect().await;
    let mut bytes = login(b"u");
    bytes.extend(frame(Frame::Msg(b"kept")));
    bytes.extend([0x04, 5, 0]);
    bytes.extend(b"extra");
    bytes.extend(vec![b'z'; 100_000]);
    assert_eq!(
        exchange_until_close(&mut s, &bytes).await,
        [ACK, ACK, ACK, ACK]
    );
    assert_eq!(h.log_text(), "[u]: kept\r\n");
}

#[tokio::test]
async fn reply_after_reject_survives_bytes_the_client_sent_after_it() {
    let h = Harness::start().await;
    let mut s = h.connect().await;
    let mut bytes = frames(&[Frame::Name(b"u"), Frame::Pass(b"B")]);
    for _ in 0..2000 {
        bytes.extend(frame(Frame::Msg(b"after the reject")));
    }
    assert_eq!(exchange_until_close(&mut s, &bytes).await, [ACK, NAK]);
    assert_eq!(h.log(), b"");
}

//= spec/protocol.md#limits
//= type=test
//# A server MUST serve at least 1000 simultaneous connections unless
//# configured with a lower connection limit.
//= spec/protocol.md#log-file
//= type=test
//# The server MUST write each record whole, never interleaved with bytes of another record.
#[tokio::test]
async fn a_thousand_simultaneous_clients_every_record_exactly_once() {
    // Two descriptors per connection in this one process (client and server).
    rlimit::increase_nofile_limit(4096).unwrap();
    let h = Harness::start().await;
    const CLIENTS: usize = 1000;
    const EACH: usize = 5;
    // Connect and authenticate everyone first, so all are open at once.
    let mut streams = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let mut s = h.connect().await;
        s.write_all(&login(format!("c{i}").as_bytes()))
            .await
            .unwrap();
        streams.push(s);
    }
    let mut tasks = Vec::new();
    for (i, mut s) in streams.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            assert_eq!(read_n(&mut s, 2).await, [ACK, ACK]);
            let mut bytes = Vec::new();
            for j in 0..EACH {
                bytes.extend(frame(Frame::Msg(format!("m{i}-{j}").as_bytes())));
            }
            bytes.push(0x04);
            exchange_until_close(&mut s, &bytes).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), vec![ACK; EACH + 1]);
    }
    let mut got: Vec<_> = records(&h.log()).map(|r| r.unwrap()).collect();
    got.sort_by(|a, b| (&a.name, &a.message).cmp(&(&b.name, &b.message)));
    let mut want: Vec<_> = (0..CLIENTS)
        .flat_map(|i| {
            (0..EACH).map(move |j| rec(format!("c{i}").as_bytes(), format!("m{i}-{j}").as_bytes()))
        })
        .collect();
    want.sort_by(|a, b| (&a.name, &a.message).cmp(&(&b.name, &b.message)));
    assert_eq!(got.len(), CLIENTS * EACH);
    assert_eq!(got, want);
}

//= spec/protocol.md#record-format
//= type=test
//# A record MUST NOT contain the bytes CR or LF except for its final CR LF.
#[tokio::test]
async fn forging_attempt_stays_one_escaped_record() {
    let h = Harness::start().await;
    let mut s = h.connect().await;
    let mut bytes = login(b"mallory");
    bytes.extend(frame(Frame::Msg(b"hi\r\n[admin]: grant mallory root")));
    bytes.extend(frames(&[Frame::Close]));
    exchange_until_close(&mut s, &bytes).await;
    let mut s = h.connect().await;
    let mut bytes = login(b"admin]: x");
    bytes.extend(frame(Frame::Msg(b"forged?")));
    bytes.push(0x04);
    exchange_until_close(&mut s, &bytes).await;
    assert_eq!(
        h.log_text(),
        "[mallory]: hi␍␊[admin]: grant mallory root\r\n[admin␦5D: x]: forged?\r\n"
    );
    let got: Vec<_> = records(&h.log()).map(|r| r.unwrap()).collect();
    assert_eq!(
        got,
        [
            rec(b"mallory", b"hi\r\n[admin]: grant mallory root"),
            rec(b"admin]: x", b"forged?")
        ]
    );
}

//= spec/protocol.md#listening
//= type=test
//# A failure on one connection MUST NOT affect any other connection.
#[tokio::test]
async fn a_reset_connection_does_not_disturb_another() {
    let h = Harness::start().await;
    let mut good = h.connect().await;
    good.write_all(&login(b"good")).await.unwrap();
    assert_eq!(read_n(&mut good, 2).await, [ACK, ACK]);
    for _ in 0..20 {
        // Half a frame, then an abortive close (RST) from the client.
        let bad = h.connect().await;
        let std_bad = bad.into_std().unwrap();
        let socket = socket2::Socket::from(std_bad);
        socket.set_linger(Some(Duration::ZERO)).unwrap();
        let mut bytes = login(b"bad");
        bytes.extend([3, 100, 0, b'x']);
        std::io::Write::write_all(&mut &socket, &bytes).unwrap();
        drop(socket);
        good.write_all(&frame(Frame::Msg(b"unaffected")))
            .await
            .unwrap();
        assert_eq!(read_n(&mut good, 1).await, [ACK]);
    }
    assert_eq!(exchange_until_close(&mut good, &[0x04]).await, [ACK]);
    let got: Vec<_> = records(&h.log()).map(|r| r.unwrap()).collect();
    assert_eq!(got, vec![rec(b"good", b"unaffected"); 20]);
}

//= spec/protocol.md#listening
//= type=test
//# By default the server MUST listen on TCP port 5555 on every IPv6 and IPv4 interface.
#[tokio::test]
async fn default_is_port_5555_on_every_interface_both_families() {
    use std::net::{Ipv6Addr, SocketAddr};
    let default = msglog::server::Config::default();
    assert_eq!(
        default.bind,
        [SocketAddr::from((Ipv6Addr::UNSPECIFIED, 5555))]
    );
    // The same unspecified address on a free port takes IPv4 and IPv6 alike.
    let dir = tempfile::tempdir().unwrap();
    let server = msglog::testkit::TestServer::start_with(msglog::server::Config {
        bind: vec![SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))],
        log_path: dir.path().join("messages.log"),
        ..default
    })
    .await
    .unwrap();
    let port = server.addr.port();
    let mut targets = vec![SocketAddr::from(([127, 0, 0, 1], port))];
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        targets.push(SocketAddr::from((Ipv6Addr::LOCALHOST, port)));
    }
    for target in targets {
        let mut s = tokio::net::TcpStream::connect(target).await.unwrap();
        assert_eq!(
            exchange_until_close(&mut s, &[0x04]).await,
            [ACK],
            "{target}"
        );
    }
}
