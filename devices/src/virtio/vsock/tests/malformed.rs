//! Everything a guest can get wrong: the device drops it with a log and keeps working.

use vm_memory::{Bytes, GuestAddress};

use super::Rig;
use crate::virtio::test_utils::guest_memory;
use crate::virtio::vsock::packet::{HEADER_SIZE, MAX_PAYLOAD, OP_REQUEST, OP_RST, OP_RW};
use crate::virtio::vsock::test_utils::{guest_pkt, is_closed, R, W};
use virtio_bindings::virtio_ring::VRING_DESC_F_NEXT;

/// Scratch guest memory for hand-made chains, past the mock driver's buffers.
const SCRATCH: u64 = 0xe0_0000;

/// The guest can still open connections: a request to a port nobody listens on gets RST.
fn assert_still_works(rig: &mut Rig<'_>) {
    rig.send(guest_pkt(OP_REQUEST, 4242, 4242), &[]);
    let (header, _) = rig.recv_one();
    assert_eq!((header.op, header.dst_port), (OP_RST, 4242));
}

#[test]
fn malformed_tx_chains_are_returned_and_dropped() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let mut oversized = guest_pkt(OP_RW, 1, 2);
    oversized.len = MAX_PAYLOAD as u32 + 1;
    mem.write_slice(&oversized.to_bytes(), GuestAddress(SCRATCH))
        .unwrap();
    let mut truncated = guest_pkt(OP_RW, 1, 2);
    truncated.len = 100;
    mem.write_slice(&truncated.to_bytes(), GuestAddress(SCRATCH + 0x100))
        .unwrap();
    let header = HEADER_SIZE as u32;

    let tx = &mut rig.guest.tx;
    tx.add_chain(&[(SCRATCH, header - 1, R)]); // shorter than a header
    tx.add_chain(&[(SCRATCH, 0, R)]); // zero-length
    tx.add_chain(&[(SCRATCH, header, W)]); // device-writable
    tx.add_chain(&[(0x4000_0000, header, R)]); // outside guest RAM
    tx.add_chain(&[(u64::MAX - 8, header, R)]); // wrapping the address space
    tx.add_chain(&[(SCRATCH, header, R)]); // payload over 64 KiB
    tx.add_chain(&[(SCRATCH + 0x100, header, R), (SCRATCH + 0x200, 99, R)]); // short payload
                                                                             // A descriptor that chains to itself, and a head past the table.
    tx.store_desc(60, SCRATCH + 0x100, header, VRING_DESC_F_NEXT as u16, 60);
    tx.publish_head(60);
    tx.publish_head(0xffff);
    rig.dev().handle_tx_notify();

    // Every real chain came back empty (the made-up head has no slot to return).
    let mut returned = 0;
    while let Some((_, len)) = rig.guest.tx.take_used() {
        assert_eq!(len, 0);
        returned += 1;
    }
    assert_eq!(returned, 8);
    assert!(rig.recv_all().is_empty());
    assert_still_works(&mut rig);
}

#[test]
fn wrong_addresses_types_and_ops_are_dropped_or_reset() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let listener = rig.listen(7);

    // Not addressed to the host, or not from this guest: dropped, no listener reached.
    let mut misaddressed = guest_pkt(OP_REQUEST, 1, 7);
    misaddressed.dst_cid = 5;
    rig.send(misaddressed, &[]);
    let mut spoofed = guest_pkt(OP_REQUEST, 1, 7);
    spoofed.src_cid = 9;
    rig.send(spoofed, &[]);
    assert!(rig.recv_all().is_empty());
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err());

    // An unsupported socket type gets RST (but an RST is never answered).
    let mut seqpacket = guest_pkt(OP_REQUEST, 1, 7);
    seqpacket.type_ = 2;
    rig.send(seqpacket, &[]);
    let (header, _) = rig.recv_one();
    assert_eq!(
        (header.op, header.src_port, header.dst_port),
        (OP_RST, 7, 1)
    );
    seqpacket.op = OP_RST;
    rig.send(seqpacket, &[]);
    assert!(rig.recv_all().is_empty());

    // Unknown ops are dropped; known ones for unknown connections get RST; RST gets nothing.
    for op in [0, 8, 0xffff] {
        rig.send(guest_pkt(op, 1, 7), &[]);
    }
    assert!(rig.recv_all().is_empty());
    rig.send(guest_pkt(OP_RW, 1, 7), b"who?");
    assert_eq!(rig.recv_one().0.op, OP_RST);
    rig.send(guest_pkt(OP_RST, 1, 7), &[]);
    assert!(rig.recv_all().is_empty());
    assert_eq!(rig.dev().muxer().connection_count(), 0);
}

#[test]
fn reusing_the_ports_of_a_live_connection_resets_it() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let listener = rig.listen(7);
    let mut host = rig.guest_connect(&listener, 1, 7);
    rig.send(guest_pkt(OP_REQUEST, 1, 7), &[]);
    assert_eq!(rig.recv_one().0.op, OP_RST);
    assert!(is_closed(&mut host));
    assert_eq!(rig.dev().muxer().connection_count(), 0);
}

#[test]
fn unusable_rx_buffers_are_returned_empty_and_the_packet_waits() {
    let mem = guest_memory();
    let mut rig = Rig::without_rx_buffers(&mem);
    let rx = &mut rig.guest.rx;
    rx.add_chain(&[(SCRATCH, 64, R)]); // device-readable
    rx.add_chain(&[(SCRATCH, HEADER_SIZE as u32 - 1, W)]); // too small for a header
    rx.add_chain(&[(0x4000_0000, 4096, W)]); // outside guest RAM
    rx.store_desc(60, SCRATCH, 64, (VRING_DESC_F_NEXT | W as u32) as u16, 60);
    rx.publish_head(60); // a loop
    rig.send(guest_pkt(OP_REQUEST, 4242, 4242), &[]);
    for _ in 0..4 {
        assert_eq!(rig.guest.rx.take_used().map(|(_, len)| len), Some(0));
    }
    assert!(rig.guest.rx.take_used().is_none());
    // The RST was kept for a usable buffer.
    rig.post_rx(1);
    let (header, _) = rig.recv_one();
    assert_eq!((header.op, header.dst_port), (OP_RST, 4242));
}
