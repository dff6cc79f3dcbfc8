//! Host programs connecting through `<uds>` with `CONNECT <port>`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use super::Rig;
use crate::virtio::test_utils::guest_memory;
use crate::virtio::vsock::packet::{OP_REQUEST, OP_RST, OP_RW};
use crate::virtio::vsock::test_utils::{guest_pkt, is_closed, read_some};

#[test]
fn host_program_reaches_the_guest_and_data_flows_both_ways() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let (mut host, port) = rig.host_connect(52);
    assert!((1 << 30..1 << 31).contains(&port));
    assert!(rig.irq.irqfd().read().unwrap() > 0);

    host.write_all(b"ping").unwrap();
    rig.poll();
    let (header, data) = rig.recv_one();
    assert_eq!(
        (header.op, header.src_port, header.dst_port),
        (OP_RW, port, 52)
    );
    assert_eq!(data, b"ping");

    rig.send(guest_pkt(OP_RW, 52, port), b"pong");
    assert_eq!(read_some(&mut host, 64), b"pong");
    assert_eq!(rig.dev().muxer().connection_count(), 1);
}

#[test]
fn data_sent_right_after_the_command_waits_for_the_guest() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let mut host = UnixStream::connect(rig.dir.uds()).unwrap();
    host.write_all(b"CONNECT 52\nearly").unwrap();
    rig.poll();
    let (request, _) = rig.recv_one();
    assert_eq!(request.op, OP_REQUEST);
    rig.send(
        guest_pkt(
            crate::virtio::vsock::packet::OP_RESPONSE,
            52,
            request.src_port,
        ),
        &[],
    );
    rig.poll();
    let (header, data) = rig.recv_one();
    assert_eq!((header.op, data.as_slice()), (OP_RW, &b"early"[..]));
    let mut ok = [0u8; 14];
    host.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"OK 1073741824\n");
}

#[test]
fn guest_refusal_closes_the_host_stream() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let mut host = UnixStream::connect(rig.dir.uds()).unwrap();
    host.write_all(b"CONNECT 99\n").unwrap();
    rig.poll();
    let (request, _) = rig.recv_one();
    rig.send(guest_pkt(OP_RST, 99, request.src_port), &[]);
    assert!(is_closed(&mut host));
    assert_eq!(rig.dev().muxer().connection_count(), 0);
    // Nothing goes back to the guest for its own RST.
    assert!(rig.recv_all().is_empty());
}

#[test]
fn bad_connect_commands_close_the_host_stream() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let lines: [&[u8]; 6] = [
        b"HELLO 52\n",
        b"CONNECT\n",
        b"CONNECT 52x\n",
        b"CONNECT 4294967295\n",
        b"CONNECT 1 2\n",
        &[b'7'; 40],
    ];
    let mut streams: Vec<UnixStream> = lines
        .iter()
        .map(|line| {
            let mut host = UnixStream::connect(rig.dir.uds()).unwrap();
            host.write_all(line).unwrap();
            host
        })
        .collect();
    // And one that gives up half-way.
    let mut quitter = UnixStream::connect(rig.dir.uds()).unwrap();
    quitter.write_all(b"CONN").unwrap();
    quitter.shutdown(std::net::Shutdown::Write).unwrap();
    streams.push(quitter);
    rig.poll();
    for host in &mut streams {
        assert!(is_closed(host));
    }
    assert!(rig.recv_all().is_empty());
    assert_eq!(rig.dev().muxer().connection_count(), 0);
}

#[test]
fn a_command_split_across_writes_is_assembled() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let mut host = UnixStream::connect(rig.dir.uds()).unwrap();
    host.write_all(b"CONNECT 1").unwrap();
    rig.poll();
    assert!(rig.recv_all().is_empty());
    host.write_all(b"0\n").unwrap();
    rig.poll();
    let (request, _) = rig.recv_one();
    assert_eq!((request.op, request.dst_port), (OP_REQUEST, 10));
}

#[test]
fn host_ports_are_distinct_and_in_range() {
    let mem = guest_memory();
    let mut rig = Rig::new(&mem);
    let hosts: Vec<UnixStream> = (0..20)
        .map(|_| {
            let mut host = UnixStream::connect(rig.dir.uds()).unwrap();
            host.write_all(b"CONNECT 7\n").unwrap();
            host
        })
        .collect();
    rig.poll();
    let requests = rig.recv_all();
    assert_eq!(requests.len(), hosts.len());
    let mut ports: Vec<u32> = requests.iter().map(|(h, _)| h.src_port).collect();
    assert!(ports.iter().all(|p| (1 << 30..1 << 31).contains(p)));
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), hosts.len());
}
