//! Device-level tests: a mock guest driver on one side, real Unix sockets on the other.

mod flow_control;
mod guest_initiated;
mod host_initiated;
mod lifecycle;
mod malformed;

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex, MutexGuard};

use vm_memory::GuestMemoryMmap;

use super::packet::{PacketHeader, OP_REQUEST, OP_RESPONSE};
use super::test_utils::{guest_pkt, read_some, Guest, SocketDir, GUEST_CID};
use super::{Vsock, HOST_CID};
use crate::virtio::VirtioInterrupt;

/// RX buffers the rig posts up front.
const RX_BUFFERS: usize = 32;

/// A device, its socket directory, and the mock guest driving it.
struct Rig<'a> {
    dir: SocketDir,
    dev: Arc<Mutex<Vsock>>,
    guest: Guest<'a>,
    irq: Arc<VirtioInterrupt>,
}

impl<'a> Rig<'a> {
    /// An activated device with [`RX_BUFFERS`] RX buffers posted.
    fn new(mem: &'a GuestMemoryMmap) -> Rig<'a> {
        let mut rig = Rig::without_rx_buffers(mem);
        rig.guest.post_rx(RX_BUFFERS);
        rig
    }

    /// An activated device whose guest has not posted RX buffers yet.
    fn without_rx_buffers(mem: &'a GuestMemoryMmap) -> Rig<'a> {
        let dir = SocketDir::new();
        let dev = Vsock::new(GUEST_CID, dir.uds()).unwrap();
        let guest = Guest::new(mem);
        let irq = guest.activate(&mut dev.lock().unwrap());
        Rig {
            dir,
            dev,
            guest,
            irq,
        }
    }

    fn dev(&self) -> MutexGuard<'_, Vsock> {
        self.dev.lock().unwrap()
    }

    /// Lets the device handle whatever its host sockets report.
    fn poll(&mut self) {
        for _ in 0..4 {
            self.dev().handle_backend_event();
        }
    }

    /// The guest sends one packet (and notifies the TX queue).
    fn send(&mut self, header: PacketHeader, payload: &[u8]) {
        self.guest.send(header, payload);
        self.dev().handle_tx_notify();
    }

    /// The guest posts `count` more RX buffers and notifies the RX queue.
    fn post_rx(&mut self, count: usize) {
        self.guest.post_rx(count);
        self.dev().process_rx();
    }

    /// Everything the guest has received so far.
    fn recv_all(&mut self) -> Vec<(PacketHeader, Vec<u8>)> {
        self.guest.recv_all()
    }

    /// The only packet the guest received since the last look.
    fn recv_one(&mut self) -> (PacketHeader, Vec<u8>) {
        let mut all = self.recv_all();
        assert_eq!(all.len(), 1, "expected one packet, got {all:?}");
        all.remove(0)
    }

    /// A host program connects and asks for guest port `port`; the guest accepts.
    /// Returns the stream (past its `OK` line) and the host port.
    fn host_connect(&mut self, port: u32) -> (UnixStream, u32) {
        let mut host = UnixStream::connect(self.dir.uds()).unwrap();
        writeln!(host, "CONNECT {port}").unwrap();
        self.poll();
        let (request, _) = self.recv_one();
        assert_eq!((request.op, request.dst_port), (OP_REQUEST, port));
        assert_eq!((request.src_cid, request.dst_cid), (HOST_CID, GUEST_CID));
        self.send(guest_pkt(OP_RESPONSE, port, request.src_port), &[]);
        let ok = read_some(&mut host, 64);
        assert_eq!(ok, format!("OK {}\n", request.src_port).as_bytes());
        (host, request.src_port)
    }

    /// A host listener for host port `port`.
    fn listen(&self, port: u32) -> UnixListener {
        UnixListener::bind(self.dir.port_path(port)).unwrap()
    }

    /// The guest connects from `src` to host port `dst`, where `listener` waits; the device
    /// answers RESPONSE. Returns the host side of the stream.
    fn guest_connect(&mut self, listener: &UnixListener, src: u32, dst: u32) -> UnixStream {
        self.send(guest_pkt(OP_REQUEST, src, dst), &[]);
        let (response, _) = self.recv_one();
        assert_eq!(
            (response.op, response.src_port, response.dst_port),
            (OP_RESPONSE, dst, src)
        );
        listener.accept().unwrap().0
    }
}
