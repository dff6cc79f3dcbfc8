//! Guest connections to host port `P`, bridged to `<uds>_P`, and closing in both directions.

use std::io::{Read, Write};

use super::Rig;
use crate::virtio::test_utils::guest_memory;
use crate::virtio::vsock::packet::{
    OP_REQUEST, OP_RST, OP_RW, OP_SHUTDOWN, SHUTDOWN_RCV, SHUTDOWN_SEND,
};
use crate::virtio::vsock::test_utils::{guest_pkt, is_closed, read_some};

#[test]
fn guest_connection_reaches_the_host_listener_and_data_flows() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let listener = rig.listen(2695);
    let mut host = rig.guest_connect(&listener, 40000, 2695);

    rig.send(guest_pkt(OP_RW, 40000, 2695), b"hello host");
    assert_eq!(read_some(&mut host, 64), b"hello host");

    host.write_all(b"hello guest").unwrap();
    rig.poll();
    let (header, data) = rig.recv_one();
    assert_eq!(
        (header.op, header.src_port, header.dst_port),
        (OP_RW, 2695, 40000)
    );
    assert_eq!(data, b"hello guest");
}

#[test]
fn guest_connection_without_a_listener_gets_rst() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    rig.send(guest_pkt(OP_REQUEST, 40000, 2696), &[]);
    let (header, _) = rig.recv_one();
    assert_eq!(
        (header.op, header.src_port, header.dst_port),
        (OP_RST, 2696, 40000)
    );
    assert_eq!(rig.dev().muxer().connection_count(), 0);
}

#[test]
fn guest_close_ends_the_host_stream_after_its_data() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let listener = rig.listen(5);
    let mut host = rig.guest_connect(&listener, 1000, 5);
    rig.send(guest_pkt(OP_RW, 1000, 5), b"last words");
    let mut shutdown = guest_pkt(OP_SHUTDOWN, 1000, 5);
    shutdown.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
    rig.send(shutdown, &[]);
    let (header, _) = rig.recv_one();
    assert_eq!(header.op, OP_RST);
    assert_eq!(rig.dev().muxer().connection_count(), 0);
    let mut all = Vec::new();
    host.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"last words");
}

#[test]
fn host_close_reaches_the_guest_and_its_rst_ends_the_connection() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let listener = rig.listen(5);
    let host = rig.guest_connect(&listener, 1000, 5);
    drop(host);
    rig.poll();
    let (header, _) = rig.recv_one();
    assert_eq!(
        (header.op, header.flags),
        (OP_SHUTDOWN, SHUTDOWN_RCV | SHUTDOWN_SEND)
    );
    assert_eq!(rig.dev().muxer().connection_count(), 1);
    rig.send(guest_pkt(OP_RST, 1000, 5), &[]);
    assert_eq!(rig.dev().muxer().connection_count(), 0);
    assert!(rig.recv_all().is_empty());
}

#[test]
fn guest_half_close_gives_the_host_eof_and_the_reply_still_flows() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let listener = rig.listen(80);
    let mut host = rig.guest_connect(&listener, 1000, 80);
    rig.send(guest_pkt(OP_RW, 1000, 80), b"GET /");
    let mut shutdown = guest_pkt(OP_SHUTDOWN, 1000, 80);
    shutdown.flags = SHUTDOWN_SEND;
    rig.send(shutdown, &[]);
    let mut request = Vec::new();
    host.read_to_end(&mut request).unwrap();
    assert_eq!(request, b"GET /");
    host.write_all(b"200 OK").unwrap();
    drop(host);
    rig.poll();
    let packets = rig.recv_all();
    let ops: Vec<(u16, u32)> = packets.iter().map(|(h, _)| (h.op, h.flags)).collect();
    assert_eq!(
        ops,
        [(OP_RW, 0), (OP_SHUTDOWN, SHUTDOWN_RCV | SHUTDOWN_SEND)]
    );
    assert_eq!(packets[0].1, b"200 OK");
}

#[test]
fn guest_rst_closes_the_host_stream() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let (mut host, port) = rig.host_connect(52);
    rig.send(guest_pkt(OP_RST, 52, port), &[]);
    assert!(is_closed(&mut host));
    assert_eq!(rig.dev().muxer().connection_count(), 0);
}
