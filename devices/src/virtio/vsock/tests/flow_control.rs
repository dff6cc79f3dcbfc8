//! Credit-based flow control through the device, RX buffer shortage, many connections.

use std::io::Write;

use super::{Rig, RX_BUFFERS};
use crate::virtio::test_utils::guest_memory;
use crate::virtio::vsock::connection::CONN_BUF_SIZE;
use crate::virtio::vsock::packet::{
    OP_CREDIT_REQUEST, OP_CREDIT_UPDATE, OP_REQUEST, OP_RESPONSE, OP_RW,
};
use crate::virtio::vsock::test_utils::{guest_pkt, read_some};

#[test]
fn the_device_never_sends_more_than_the_guest_credit() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let listener = rig.listen(9);
    let mut request = guest_pkt(OP_REQUEST, 1000, 9);
    request.buf_alloc = 1000;
    rig.send(request, &[]);
    assert_eq!(rig.recv_one().0.op, OP_RESPONSE);
    let mut host = listener.accept().unwrap().0;
    let sent: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    host.write_all(&sent).unwrap();

    let mut received = Vec::new();
    let mut rounds = 0;
    while received.len() < sent.len() {
        rounds += 1;
        assert!(rounds < 20, "stalled at {} bytes", received.len());
        rig.poll();
        let packets = rig.recv_all();
        rig.post_rx(packets.len());
        let mut in_round = 0;
        for (header, data) in packets {
            match header.op {
                OP_RW => {
                    in_round += data.len();
                    received.extend(data);
                }
                OP_CREDIT_REQUEST => {}
                op => panic!("unexpected op {op}"),
            }
        }
        // The guest consumed everything it received and says so.
        assert!(
            in_round <= 1000,
            "{in_round} bytes exceed the 1000-byte credit"
        );
        let mut update = guest_pkt(OP_CREDIT_UPDATE, 1000, 9);
        update.buf_alloc = 1000;
        update.fwd_cnt = received.len() as u32;
        rig.send(update, &[]);
    }
    assert_eq!(received, sent);
}

#[test]
fn the_host_reading_guest_data_returns_credit_to_the_guest() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let listener = rig.listen(9);
    let mut host = rig.guest_connect(&listener, 1000, 9);
    let chunk = vec![3u8; 32 * 1024];
    let mut updates = Vec::new();
    for _ in 0..8 {
        rig.send(guest_pkt(OP_RW, 1000, 9), &chunk);
        let mut got = 0;
        while got < chunk.len() {
            got += read_some(&mut host, chunk.len() - got).len();
            rig.poll();
        }
        updates.extend(rig.recv_all());
    }
    let (header, _) = updates
        .iter()
        .find(|(h, _)| h.op == OP_CREDIT_UPDATE)
        .expect("no credit update after 256 KiB");
    assert_eq!(header.buf_alloc, CONN_BUF_SIZE);
    assert!(header.fwd_cnt >= CONN_BUF_SIZE / 2);
}

#[test]
fn a_slow_host_gets_all_guest_data_in_order() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let listener = rig.listen(9);
    let mut host = rig.guest_connect(&listener, 1000, 9);
    let data: Vec<u8> = (0..CONN_BUF_SIZE).map(|i| (i % 251) as u8).collect();
    for chunk in data.chunks(64 * 1024) {
        rig.send(guest_pkt(OP_RW, 1000, 9), chunk);
    }
    let mut got = Vec::new();
    while got.len() < data.len() {
        got.extend(read_some(&mut host, 1 << 20));
        rig.poll();
    }
    assert!(got == data);
    assert_eq!(rig.dev().muxer().connection_count(), 1);
}

#[test]
fn packets_wait_for_rx_buffers() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let count = RX_BUFFERS + 8;
    for port in 0..count as u32 {
        rig.send(guest_pkt(OP_REQUEST, 5000 + port, 77), &[]);
    }
    // No listener: each request gets an RST, but only RX_BUFFERS fit for now.
    assert_eq!(rig.recv_all().len(), RX_BUFFERS);
    rig.post_rx(8);
    assert_eq!(rig.recv_all().len(), 8);
}

#[test]
fn many_connections_carry_their_own_data() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let listener = rig.listen(2695);
    let mut guest_side = Vec::new();
    for i in 0..16u32 {
        let host = rig.guest_connect(&listener, 3000 + i, 2695);
        rig.post_rx(1);
        guest_side.push((3000 + i, host));
    }
    let mut host_side = Vec::new();
    for i in 0..16u32 {
        let (host, port) = rig.host_connect(100 + i);
        rig.post_rx(1);
        host_side.push((100 + i, port, host));
    }
    assert_eq!(rig.dev().muxer().connection_count(), 32);

    // Each host stream says its name; each packet must come from the right connection.
    for (guest_port, host) in &mut guest_side {
        write!(host, "g{guest_port}").unwrap();
    }
    for (guest_port, _, host) in &mut host_side {
        write!(host, "h{guest_port}").unwrap();
    }
    rig.poll();
    let packets = rig.recv_all();
    assert_eq!(packets.len(), 32);
    for (header, data) in &packets {
        assert_eq!(header.op, OP_RW);
        let text = String::from_utf8(data.clone()).unwrap();
        if header.src_port == 2695 {
            assert_eq!(text, format!("g{}", header.dst_port));
        } else {
            assert_eq!(text, format!("h{}", header.dst_port));
        }
    }
    rig.post_rx(32);

    // And guest data goes to the right stream.
    for (guest_port, host) in &mut guest_side {
        let payload = format!("to g{guest_port}");
        rig.send(guest_pkt(OP_RW, *guest_port, 2695), payload.as_bytes());
        assert_eq!(read_some(host, 64), payload.as_bytes());
    }
    for (guest_port, host_port, host) in &mut host_side {
        let payload = format!("to h{guest_port}");
        rig.send(
            guest_pkt(OP_RW, *guest_port, *host_port),
            payload.as_bytes(),
        );
        assert_eq!(read_some(host, 64), payload.as_bytes());
    }
}
