//! Unit tests of the connection state machine against real Unix socket pairs.

use super::*;
use crate::virtio::vsock::packet::MAX_PAYLOAD;
use crate::virtio::vsock::test_utils::{guest_pkt, read_some, GUEST_CID};
use crate::virtio::vsock::txbuf::MAX_TOTAL_BUFFERED;

fn budget() -> TxBudget {
    TxBudget::new(MAX_TOTAL_BUFFERED)
}

const KEY: ConnKey = ConnKey {
    local_port: 1234,
    peer_port: 5000,
};

fn pair() -> (UnixStream, UnixStream) {
    let (host, dev) = UnixStream::pair().unwrap();
    dev.set_nonblocking(true).unwrap();
    (host, dev)
}

/// A guest-initiated connection with `credit` bytes of guest buffer, past its RESPONSE.
fn established(credit: u32) -> (Connection, UnixStream) {
    let (host, dev) = pair();
    let mut request = guest_pkt(OP_REQUEST, KEY.peer_port, KEY.local_port);
    request.buf_alloc = credit;
    let mut conn = Connection::new_guest_initiated(dev, KEY, GUEST_CID, &request, budget());
    let response = conn.recv_pkt(&mut []).unwrap();
    assert_eq!(response.op, OP_RESPONSE);
    (conn, host)
}

fn guest(op: u16) -> PacketHeader {
    guest_pkt(op, KEY.peer_port, KEY.local_port)
}

fn recv(conn: &mut Connection) -> Option<(PacketHeader, Vec<u8>)> {
    let mut buf = vec![0u8; MAX_PAYLOAD];
    let header = conn.recv_pkt(&mut buf)?;
    buf.truncate(header.len as usize);
    Some((header, buf))
}

#[test]
fn host_initiated_sends_request_then_confirms_ok_to_the_host() {
    let (mut host, dev) = pair();
    let key = ConnKey {
        local_port: 1 << 30,
        peer_port: 52,
    };
    let mut conn = Connection::new_host_initiated(dev, key, GUEST_CID, budget());
    assert!(!conn.guest_knows());
    let request = conn.recv_pkt(&mut []).unwrap();
    assert_eq!(
        (
            request.op,
            request.src_cid,
            request.dst_cid,
            request.src_port,
            request.dst_port
        ),
        (OP_REQUEST, HOST_CID, GUEST_CID, 1 << 30, 52)
    );
    assert_eq!(
        (request.type_, request.buf_alloc),
        (TYPE_STREAM, CONN_BUF_SIZE)
    );
    assert!(conn.guest_knows());
    assert!(conn.deadline().is_some());
    // No reading from the host before the guest accepted.
    assert_eq!(conn.interest(), Some(EventSet::empty()));

    conn.send_pkt(&guest_pkt(OP_RESPONSE, 52, 1 << 30), &[]);
    assert_eq!(read_some(&mut host, 64), b"OK 1073741824\n");
    assert_eq!(conn.deadline(), None);
    assert_eq!(conn.interest(), Some(EventSet::IN));
}

#[test]
fn unanswered_request_expires_into_rst() {
    let (_host, dev) = pair();
    let mut conn = Connection::new_host_initiated(dev, KEY, GUEST_CID, budget());
    conn.recv_pkt(&mut []).unwrap();
    assert!(!conn.expire(Instant::now()));
    assert!(conn.expire(Instant::now() + REQUEST_TIMEOUT));
    assert_eq!(conn.recv_pkt(&mut []).unwrap().op, OP_RST);
    assert_eq!(conn.interest(), None);
}

#[test]
fn data_flows_both_ways_and_counts_are_advertised() {
    let (mut conn, mut host) = established(GUEST_BUF);
    host.write_all(b"from host").unwrap();
    conn.notify(EventSet::IN);
    let (header, data) = recv(&mut conn).unwrap();
    assert_eq!((header.op, header.len), (OP_RW, 9));
    assert_eq!(data, b"from host");
    // Nothing more to read: the pending read ends quietly.
    assert!(recv(&mut conn).is_none());
    assert!(!conn.has_pending_rx());

    conn.send_pkt(&guest(OP_RW), b"from guest");
    assert_eq!(read_some(&mut host, 64), b"from guest");
    host.write_all(b"x").unwrap();
    conn.notify(EventSet::IN);
    let (header, _) = recv(&mut conn).unwrap();
    assert_eq!(header.fwd_cnt, 10);
}

const GUEST_BUF: u32 = 64 * 1024;

#[test]
fn host_data_never_exceeds_the_guest_credit() {
    let (mut conn, mut host) = established(10);
    host.write_all(&[7u8; 25]).unwrap();
    conn.notify(EventSet::IN);
    let (header, data) = recv(&mut conn).unwrap();
    assert_eq!((header.op, data.len()), (OP_RW, 10));
    // Out of credit: ask for more, and stop watching the stream meanwhile.
    let (header, _) = recv(&mut conn).unwrap();
    assert_eq!(header.op, OP_CREDIT_REQUEST);
    assert!(recv(&mut conn).is_none());
    assert_eq!(conn.interest(), Some(EventSet::empty()));

    // The guest consumed 4 bytes: 4 bytes of credit.
    let mut update = guest(OP_CREDIT_UPDATE);
    update.buf_alloc = 10;
    update.fwd_cnt = 4;
    conn.send_pkt(&update, &[]);
    assert_eq!(conn.interest(), Some(EventSet::IN));
    conn.notify(EventSet::IN);
    assert_eq!(recv(&mut conn).unwrap().1.len(), 4);

    // A bogus fwd_cnt ahead of what was sent gives no credit at all.
    update.fwd_cnt = 1000;
    conn.send_pkt(&update, &[]);
    conn.notify(EventSet::IN);
    assert_eq!(recv(&mut conn).unwrap().0.op, OP_CREDIT_REQUEST);
}

#[test]
fn header_only_rx_buffer_keeps_the_data_for_later() {
    let (mut conn, mut host) = established(GUEST_BUF);
    host.write_all(b"abc").unwrap();
    conn.notify(EventSet::IN);
    assert!(conn.recv_pkt(&mut []).is_none());
    assert!(conn.has_pending_rx());
    assert_eq!(recv(&mut conn).unwrap().1, b"abc");
}

#[test]
fn credit_request_is_answered_and_big_transfers_trigger_updates() {
    let (mut conn, mut host) = established(GUEST_BUF);
    conn.send_pkt(&guest(OP_CREDIT_REQUEST), &[]);
    let (header, _) = recv(&mut conn).unwrap();
    assert_eq!(
        (header.op, header.buf_alloc),
        (OP_CREDIT_UPDATE, CONN_BUF_SIZE)
    );

    // The host takes everything; once half the buffer went by, the guest hears of it.
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        host.read_to_end(&mut all).unwrap();
        all.len()
    });
    let chunk = vec![1u8; MAX_PAYLOAD];
    for _ in 0..(CREDIT_UPDATE_THRESHOLD as usize / MAX_PAYLOAD) {
        conn.send_pkt(&guest(OP_RW), &chunk);
        while !conn.tx_buf.is_empty() {
            conn.notify(EventSet::OUT);
        }
    }
    let (header, _) = recv(&mut conn).unwrap();
    assert_eq!(header.op, OP_CREDIT_UPDATE);
    assert_eq!(header.fwd_cnt, CREDIT_UPDATE_THRESHOLD);
    drop(conn);
    assert_eq!(reader.join().unwrap(), CREDIT_UPDATE_THRESHOLD as usize);
}

/// Sends `len` bytes whose values continue the sequence 0, 1, 2, ... from `*next`.
fn send_pattern(conn: &mut Connection, next: &mut usize, len: usize) {
    let data: Vec<u8> = (*next..*next + len).map(|i| i as u8).collect();
    *next += len;
    conn.send_pkt(&guest(OP_RW), &data);
}

#[test]
fn guest_data_waits_in_order_while_the_host_is_slow() {
    let (mut conn, mut host) = established(GUEST_BUF);
    let mut sent = 0;
    // A well-behaved guest keeps at most CONN_BUF_SIZE bytes past fwd_cnt outstanding.
    while (sent as u32 - conn.fwd_cnt.0) + 4096 <= CONN_BUF_SIZE {
        send_pattern(&mut conn, &mut sent, 4096);
    }
    assert_eq!(conn.tx_buf.len(), sent - conn.fwd_cnt.0 as usize);
    assert!(conn.tx_buf.len() > CONN_BUF_SIZE as usize - 4096);
    assert_eq!(conn.interest(), Some(EventSet::IN | EventSet::OUT));

    let mut got = Vec::new();
    while got.len() < sent {
        got.extend(read_some(&mut host, 1 << 20));
        conn.notify(EventSet::OUT);
    }
    assert!(got.iter().enumerate().all(|(i, &b)| b == i as u8));
    assert!(conn.tx_buf.is_empty());
    assert_eq!(conn.fwd_cnt.0 as usize, sent);
    assert_eq!(conn.interest(), Some(EventSet::IN));
}

#[test]
fn guest_overrunning_its_credit_is_reset() {
    let (mut conn, _host) = established(GUEST_BUF);
    let mut sent = 0;
    while (sent as u32 - conn.fwd_cnt.0) + 4096 <= CONN_BUF_SIZE {
        send_pattern(&mut conn, &mut sent, 4096);
    }
    // Exactly the remaining credit is fine...
    let room = CONN_BUF_SIZE - (sent as u32 - conn.fwd_cnt.0);
    send_pattern(&mut conn, &mut sent, room as usize);
    assert_eq!(conn.tx_buf.len(), CONN_BUF_SIZE as usize);
    assert_ne!(conn.phase, Phase::Reset);
    // ...one byte more is not.
    send_pattern(&mut conn, &mut sent, 1);
    assert!(conn.tx_buf.is_empty());
    assert_eq!(conn.interest(), None);
    assert_eq!(conn.recv_pkt(&mut []).unwrap().op, OP_RST);
}

#[test]
fn host_hang_up_delivers_the_rest_then_full_shutdown() {
    let (mut conn, mut host) = established(GUEST_BUF);
    host.write_all(b"bye").unwrap();
    drop(host);
    conn.notify(EventSet::IN | EventSet::HANG_UP);
    assert_eq!(conn.interest(), None);
    assert_eq!(recv(&mut conn).unwrap().1, b"bye");
    let (header, _) = recv(&mut conn).unwrap();
    assert_eq!(
        (header.op, header.flags),
        (OP_SHUTDOWN, SHUTDOWN_RCV | SHUTDOWN_SEND)
    );
    assert!(conn.deadline().is_some());
    assert!(recv(&mut conn).is_none());
    assert!(conn.expire(Instant::now() + SHUTDOWN_TIMEOUT));
    assert_eq!(recv(&mut conn).unwrap().0.op, OP_RST);
}

#[test]
fn host_half_close_keeps_the_guest_to_host_direction() {
    let (mut conn, mut host) = established(GUEST_BUF);
    host.shutdown(Shutdown::Write).unwrap();
    conn.notify(EventSet::IN);
    let (header, _) = recv(&mut conn).unwrap();
    assert_eq!((header.op, header.flags), (OP_SHUTDOWN, SHUTDOWN_SEND));
    assert_eq!(conn.deadline(), None);
    assert_eq!(conn.interest(), Some(EventSet::empty()));
    conn.send_pkt(&guest(OP_RW), b"reply");
    assert_eq!(read_some(&mut host, 64), b"reply");
    // Then the host closes entirely: the guest learns it will not be read either.
    drop(host);
    conn.notify(EventSet::HANG_UP);
    let (header, _) = recv(&mut conn).unwrap();
    assert_eq!((header.op, header.flags), (OP_SHUTDOWN, SHUTDOWN_RCV));
}

#[test]
fn guest_shutdowns_close_the_host_stream_in_steps() {
    let (mut conn, mut host) = established(GUEST_BUF);
    conn.send_pkt(&guest(OP_RW), b"last");
    let mut shutdown = guest(OP_SHUTDOWN);
    shutdown.flags = SHUTDOWN_SEND;
    conn.send_pkt(&shutdown, &[]);
    let mut all = Vec::new();
    host.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"last");
    // Data after SHUTDOWN(SEND) is a protocol error: dropped.
    conn.send_pkt(&guest(OP_RW), b"late");
    // The host can still talk.
    host.write_all(b"answer").unwrap();
    conn.notify(EventSet::IN);
    assert_eq!(recv(&mut conn).unwrap().1, b"answer");
    shutdown.flags = SHUTDOWN_RCV;
    conn.send_pkt(&shutdown, &[]);
    assert_eq!(recv(&mut conn).unwrap().0.op, OP_RST);
}

#[test]
fn guest_close_with_buffered_data_waits_for_the_flush() {
    let (mut conn, mut host) = established(GUEST_BUF);
    let chunk = vec![5u8; MAX_PAYLOAD];
    while conn.tx_buf.is_empty() {
        conn.send_pkt(&guest(OP_RW), &chunk);
    }
    let mut shutdown = guest(OP_SHUTDOWN);
    shutdown.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
    conn.send_pkt(&shutdown, &[]);
    assert!(conn.deadline().is_some());
    assert!(recv(&mut conn).is_none_or(|(header, _)| header.op != OP_RST));
    while !conn.tx_buf.is_empty() {
        read_some(&mut host, 1 << 20);
        conn.notify(EventSet::OUT);
    }
    assert_eq!(recv(&mut conn).unwrap().0.op, OP_RST);
}

#[test]
fn stream_errors_and_unexpected_ops_are_handled() {
    let (mut conn, _host) = established(GUEST_BUF);
    // A RESPONSE on an established connection is ignored.
    conn.send_pkt(&guest(OP_RESPONSE), &[]);
    assert!(!conn.has_pending_rx());
    conn.notify(EventSet::ERROR);
    assert_eq!(conn.interest(), None);
    assert_eq!(recv(&mut conn).unwrap().0.op, OP_RST);
    // After the reset, nothing else comes out and packets are ignored.
    conn.send_pkt(&guest(OP_CREDIT_REQUEST), &[]);
    assert!(recv(&mut conn).is_none());
}

#[test]
fn writing_to_a_closed_host_stream_resets() {
    let (mut conn, host) = established(GUEST_BUF);
    drop(host);
    conn.send_pkt(&guest(OP_RW), b"nobody");
    assert_eq!(recv(&mut conn).unwrap().0.op, OP_RST);
}
