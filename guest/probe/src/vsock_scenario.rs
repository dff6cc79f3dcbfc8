//! `probe=vsock`: one guest-initiated stream (to host port 5000: send
//! `hello-from-guest`, print the reply, close) and one host-initiated
//! stream (accept on port 1234, answer `ping` with `pong`, wait for the
//! host to close).

use crate::deadline;
use crate::probe;
use crate::serial::write_bytes;
use crate::virtio::vsock::{
    Header, Packet, Vsock, BUF_ALLOC, HOST_CID, OP_CREDIT_REQUEST, OP_CREDIT_UPDATE, OP_REQUEST,
    OP_RESPONSE, OP_RST, OP_RW, OP_SHUTDOWN, SHUTDOWN_BOTH, TYPE_STREAM,
};
use crate::virtio::{self, ID_VSOCK};

/// Host port the guest connects to (the host test listens on `<uds>_5000`).
const HOST_PORT: u32 = 5000;
/// Our source port for that connection.
const GUEST_SRC_PORT: u32 = 49152;
/// Port the guest listens on for the host's `CONNECT 1234`.
const LISTEN_PORT: u32 = 1234;

/// A failed step: what was being done, and what went wrong.
type Failure = (&'static str, &'static str);

pub fn run(cmdline: &[u8]) {
    if let Err((step, why)) = steps(cmdline) {
        probe!("vsock error {}: {}", step, why);
    }
}

fn steps(cmdline: &[u8]) -> Result<(), Failure> {
    let found = virtio::find(cmdline, ID_VSOCK, 0).map_err(|e| ("device", e))?;
    let mut vs = Vsock::init(found.transport).map_err(|e| ("init", e))?;
    probe!("vsock cid={}", vs.cid);
    guest_initiated(&mut vs)?;
    host_initiated(&mut vs)
}

fn guest_initiated(vs: &mut Vsock) -> Result<(), Failure> {
    let mut conn = Conn::new(GUEST_SRC_PORT, HOST_PORT);
    conn.send(vs, OP_REQUEST, 0, b"")
        .map_err(|e| ("connect", e))?;
    let reply = conn.recv(vs, deadline::SHORT).map_err(|e| ("connect", e))?;
    match reply.hdr.op {
        OP_RESPONSE => probe!("vsock connected to host port {}", HOST_PORT),
        OP_RST => return Err(("connect", "refused (RST): no listener at <uds>_5000?")),
        _ => return Err(("connect", "unexpected packet instead of RESPONSE")),
    }
    conn.send(vs, OP_RW, 0, b"hello-from-guest")
        .map_err(|e| ("send", e))?;
    loop {
        let p = conn.recv(vs, deadline::LONG).map_err(|e| ("reply", e))?;
        match p.hdr.op {
            OP_RW => {
                write_bytes(b"PROBE: vsock host said ");
                write_bytes(p.data());
                write_bytes(b"\n");
                break;
            }
            OP_SHUTDOWN | OP_RST => return Err(("reply", "host closed before replying")),
            _ => {}
        }
    }
    // Full shutdown; the device confirms it with RST once our data is out.
    conn.send(vs, OP_SHUTDOWN, SHUTDOWN_BOTH, b"")
        .map_err(|e| ("close", e))?;
    while conn
        .recv(vs, deadline::SHORT)
        .map_err(|e| ("close", e))?
        .hdr
        .op
        != OP_RST
    {}
    probe!("vsock guest connection closed");
    Ok(())
}

fn host_initiated(vs: &mut Vsock) -> Result<(), Failure> {
    probe!("vsock listening {}", LISTEN_PORT);
    let request = loop {
        let p = vs.recv(deadline::LONG).map_err(|e| ("accept", e))?;
        if p.hdr.op == OP_REQUEST && p.hdr.dst_port == LISTEN_PORT && p.hdr.src_cid == HOST_CID {
            break p;
        }
        refuse_stray(vs, &p).map_err(|e| ("accept", e))?;
    };
    let mut conn = Conn::new(LISTEN_PORT, request.hdr.src_port);
    conn.update_credit(&request.hdr);
    conn.send(vs, OP_RESPONSE, 0, b"")
        .map_err(|e| ("accept", e))?;
    probe!("vsock accepted host port {}", conn.peer_port);

    // Collect the host's `ping` (it may come in pieces), answer `pong`.
    let mut got = [0u8; 4];
    let mut n = 0;
    let mut answered = false;
    loop {
        let p = conn.recv(vs, deadline::LONG).map_err(|e| ("echo", e))?;
        match p.hdr.op {
            OP_RW => {
                for &b in p.data() {
                    if n == got.len() {
                        return Err(("echo", "host sent more than ping"));
                    }
                    got[n] = b;
                    n += 1;
                }
                if n == got.len() && !answered {
                    if &got != b"ping" {
                        return Err(("echo", "host sent something other than ping"));
                    }
                    conn.send(vs, OP_RW, 0, b"pong").map_err(|e| ("echo", e))?;
                    answered = true;
                }
            }
            // The host closed its end: confirm with RST, as Linux does.
            OP_SHUTDOWN => {
                conn.send(vs, OP_RST, 0, b"").map_err(|e| ("echo", e))?;
                break;
            }
            OP_RST => break,
            _ => {}
        }
    }
    if !answered {
        return Err(("echo", "connection ended before ping arrived"));
    }
    probe!("vsock echo done");
    Ok(())
}

/// A packet for no connection of ours: refuse it so the host does not wait.
pub(crate) fn refuse_stray(vs: &mut Vsock, p: &Packet) -> Result<(), &'static str> {
    if p.hdr.op == OP_RST {
        return Ok(());
    }
    let conn = Conn::new(p.hdr.dst_port, p.hdr.src_port);
    vs.send(&conn.header(vs, OP_RST, 0), b"")
}

/// One stream connection's ports and credit (virtio 1.2, 5.10.6.3).
pub(crate) struct Conn {
    pub(crate) local_port: u32,
    pub(crate) peer_port: u32,
    /// Payload bytes we have consumed (all we received: copied out at once).
    pub(crate) fwd_cnt: u32,
    /// Payload bytes we have sent.
    tx_cnt: u32,
    /// The peer's receive buffer and how much of it it has consumed.
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
}

impl Conn {
    pub(crate) fn new(local_port: u32, peer_port: u32) -> Conn {
        Conn {
            local_port,
            peer_port,
            fwd_cnt: 0,
            tx_cnt: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
        }
    }

    fn header(&self, vs: &Vsock, op: u16, flags: u32) -> Header {
        Header {
            src_cid: vs.cid,
            dst_cid: HOST_CID,
            src_port: self.local_port,
            dst_port: self.peer_port,
            len: 0,
            type_: TYPE_STREAM,
            op,
            flags,
            buf_alloc: BUF_ALLOC,
            fwd_cnt: self.fwd_cnt,
        }
    }

    pub(crate) fn update_credit(&mut self, hdr: &Header) {
        self.peer_buf_alloc = hdr.buf_alloc;
        self.peer_fwd_cnt = hdr.fwd_cnt;
    }

    pub(crate) fn send(
        &mut self,
        vs: &mut Vsock,
        op: u16,
        flags: u32,
        data: &[u8],
    ) -> Result<(), &'static str> {
        let len = data.len() as u32;
        if op == OP_RW {
            // Never more than the peer has room for.
            let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
            if self.peer_buf_alloc.saturating_sub(in_flight) < len {
                return Err("no credit from the peer for the data");
            }
            self.tx_cnt = self.tx_cnt.wrapping_add(len);
        }
        vs.send(&self.header(vs, op, flags), data)
    }

    /// The next packet for this connection (others are refused); credit
    /// requests are answered here.
    pub(crate) fn recv(&mut self, vs: &mut Vsock, ticks: u64) -> Result<Packet, &'static str> {
        loop {
            let p = vs.recv(ticks)?;
            let h = &p.hdr;
            let ours = h.src_cid == HOST_CID
                && h.dst_cid == vs.cid
                && h.src_port == self.peer_port
                && h.dst_port == self.local_port;
            if !ours {
                refuse_stray(vs, &p)?;
                continue;
            }
            self.update_credit(h);
            if h.op == OP_RW {
                self.fwd_cnt = self.fwd_cnt.wrapping_add(h.len);
            }
            if h.op == OP_CREDIT_REQUEST {
                self.send(vs, OP_CREDIT_UPDATE, 0, b"")?;
                continue;
            }
            return Ok(p);
        }
    }
}
