//! Construction, config space, activation, reset, and the event-loop wiring.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_manager::{EventManager, SubscriberOps};

use super::Rig;
use crate::virtio::test_utils::{guest_memory, interrupt};
use crate::virtio::vsock::packet::{OP_REQUEST, OP_RESPONSE, OP_RST, OP_SHUTDOWN};
use crate::virtio::vsock::test_utils::{
    guest_pkt, is_closed, read_some, Guest, SocketDir, GUEST_CID,
};
use crate::virtio::vsock::{Vsock, VsockError};
use crate::virtio::{VirtioDevice, VIRTIO_F_VERSION_1};
use crate::Error;

#[test]
fn identity_and_config_space() {
    let dir = SocketDir::new();
    let dev = Vsock::new(0x1234_5678, dir.uds()).unwrap();
    let mut dev = dev.lock().unwrap();
    assert_eq!(dev.device_type(), 19);
    assert_eq!(dev.queue_max_sizes(), &[256, 256, 256]);
    assert_eq!(dev.avail_features(), VIRTIO_F_VERSION_1);
    assert_eq!(dev.guest_cid(), 0x1234_5678);

    let mut cid = [0xffu8; 8];
    dev.read_config(0, &mut cid);
    assert_eq!(u64::from_le_bytes(cid), 0x1234_5678);
    let mut tail = [0xffu8; 4];
    dev.read_config(2, &mut tail);
    assert_eq!(tail, [0x34, 0x12, 0, 0]);
    dev.read_config(6, &mut tail);
    assert_eq!(tail, [0; 4]);
    dev.read_config(u64::MAX, &mut tail);
    assert_eq!(tail, [0; 4]);
    // The config space is read-only.
    dev.write_config(0, &[1, 2, 3, 4]);
    dev.read_config(0, &mut cid);
    assert_eq!(u64::from_le_bytes(cid), 0x1234_5678);
}

#[test]
fn reserved_cids_and_busy_paths_are_refused() {
    let dir = SocketDir::new();
    for cid in [0, 1, 2, u64::from(u32::MAX), 1 << 32] {
        let result = Vsock::new(cid, dir.uds());
        assert!(matches!(result, Err(Error::Vsock(VsockError::InvalidCid(c))) if c == cid));
    }
    let first = Vsock::new(u64::from(u32::MAX) - 1, dir.uds()).unwrap();
    let second = Vsock::new(3, dir.uds());
    assert!(matches!(second, Err(Error::Vsock(VsockError::Bind { .. }))));
    // Dropping the device frees the path for the next one.
    drop(first);
    assert!(!dir.uds().exists());
    assert!(Vsock::new(3, dir.uds()).is_ok());
}

#[test]
fn activation_needs_three_queues() {
    let mem = guest_memory();
    let dir = SocketDir::new();
    let dev = Vsock::new(GUEST_CID, dir.uds()).unwrap();
    let guest = Guest::new(&mem);
    let two = vec![guest.rx.active_queue(), guest.tx.active_queue()];
    let result = dev.lock().unwrap().activate(mem.clone(), interrupt(), two);
    assert!(matches!(
        result,
        Err(Error::Activate {
            device: "vsock",
            ..
        })
    ));
}

#[test]
fn reset_drops_the_guests_connections_and_keeps_waiting_host_programs() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let listener = rig.listen(7);
    let mut guest_initiated = rig.guest_connect(&listener, 1, 7);
    let (mut host_initiated, _) = rig.host_connect(52);
    rig.dev().reset();
    assert!(is_closed(&mut guest_initiated));
    assert!(is_closed(&mut host_initiated));
    assert_eq!(rig.dev().muxer().connection_count(), 0);

    // While the driver is away, a host program asks for a connection: it waits.
    let mut host = UnixStream::connect(rig.dir.uds()).unwrap();
    host.write_all(b"CONNECT 2695\n").unwrap();
    rig.poll();
    assert_eq!(rig.dev().muxer().connection_count(), 1);

    // The driver comes back (fresh rings) and gets the request.
    let mem2 = guest_memory();
    let mut guest = Guest::new(&mem2);
    guest.activate(&mut rig.dev());
    guest.post_rx(4);
    rig.dev().process_rx();
    let (request, _) = guest.recv().unwrap();
    assert_eq!((request.op, request.dst_port), (OP_REQUEST, 2695));
    guest.send(guest_pkt(OP_RESPONSE, 2695, request.src_port), &[]);
    rig.dev().handle_tx_notify();
    assert_eq!(
        read_some(&mut host, 64),
        format!("OK {}\n", request.src_port).as_bytes()
    );
}

#[test]
fn the_event_loop_drives_host_sockets_and_queues() {
    let mem = guest_memory();
    let dir = SocketDir::new();
    let dev = Vsock::new(GUEST_CID, dir.uds()).unwrap();
    let mut manager = EventManager::<Arc<Mutex<Vsock>>>::new().unwrap();
    manager.add_subscriber(dev.clone());

    let mut guest = Guest::new(&mem);
    let (irq, notifiers) = guest.activate_with_notifiers(&mut dev.lock().unwrap());
    let tx_notify = &notifiers[1];
    guest.post_rx(4);
    manager.run_with_timeout(0).unwrap(); // applies the activation

    let mut host = UnixStream::connect(dir.uds()).unwrap();
    host.write_all(b"CONNECT 2695\n").unwrap();
    let mut request = None;
    for _ in 0..10 {
        manager.run_with_timeout(100).unwrap();
        request = guest.recv();
        if request.is_some() {
            break;
        }
    }
    let (request, _) = request.expect("no REQUEST reached the guest");
    assert_eq!(irq.irqfd().read().unwrap(), 1);
    assert_eq!((request.op, request.dst_port), (OP_REQUEST, 2695));

    guest.send(guest_pkt(OP_RESPONSE, 2695, request.src_port), &[]);
    tx_notify.write(1).unwrap();
    manager.run_with_timeout(100).unwrap();
    assert_eq!(
        read_some(&mut host, 64),
        format!("OK {}\n", request.src_port).as_bytes()
    );
}

#[test]
fn the_connection_limit_refuses_both_directions_until_one_closes() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    rig.dev().muxer_mut().set_max_streams(2);
    let listener = rig.listen(7);
    let _first = rig.guest_connect(&listener, 1, 7);
    let (mut second, port) = rig.host_connect(52);

    // A third host program is closed at once; a third guest request is refused.
    let mut third = UnixStream::connect(rig.dir.uds()).unwrap();
    rig.poll();
    assert!(is_closed(&mut third));
    rig.send(guest_pkt(OP_REQUEST, 2, 7), &[]);
    assert_eq!(rig.recv_one().0.op, OP_RST);

    // Once one closes, there is room again.
    rig.send(guest_pkt(OP_RST, 52, port), &[]);
    assert!(is_closed(&mut second));
    let _again = rig.guest_connect(&listener, 3, 7);
    assert_eq!(rig.dev().muxer().connection_count(), 2);
}

#[test]
fn an_unacknowledged_shutdown_times_out_into_rst() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    rig.dev()
        .muxer_mut()
        .set_shutdown_timeout(Duration::from_millis(50));
    let listener = rig.listen(7);
    drop(rig.guest_connect(&listener, 1, 7));
    rig.poll();
    assert_eq!(rig.recv_one().0.op, OP_SHUTDOWN);
    // The guest never answers with RST; the device's timer does it for it.
    std::thread::sleep(Duration::from_millis(100));
    rig.poll();
    let (header, _) = rig.recv_one();
    assert_eq!((header.op, header.dst_port), (OP_RST, 1));
    assert_eq!(rig.dev().muxer().connection_count(), 0);
}

#[test]
fn a_host_program_that_never_sends_connect_is_closed_and_frees_its_slot() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    rig.dev().muxer_mut().set_max_streams(1);
    rig.dev()
        .muxer_mut()
        .set_handshake_timeout(Duration::from_millis(100));
    let mut silent = UnixStream::connect(rig.dir.uds()).unwrap();
    rig.poll();
    assert!(!is_closed(&mut silent), "still within its deadline");
    std::thread::sleep(Duration::from_millis(200));
    rig.poll();
    assert!(is_closed(&mut silent), "closed past its deadline");
    // Its slot is free again: a well-behaved program gets through.
    let (_host, _port) = rig.host_connect(52);
}
