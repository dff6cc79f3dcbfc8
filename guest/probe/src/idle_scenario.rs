//! `probe=idle-ready`: a cheap box for the host runtime's tests. It signals readiness the way
//! the guest agent does (a `Ready` frame to host port 2696), answers the agent's port 2695
//! like a minimal agent (a ping gets a pong, a shutdown request resets the VM, anything else
//! an error), refuses every other connection, and otherwise sleeps in `hlt`.
//!
//! The frames are the agent protocol's (`boxlite_proto::agent`: a little-endian u32 length,
//! then postcard), encoded here by hand: the probe links no host crate.

use core::sync::atomic::Ordering;

use crate::deadline::{self, Deadline};
use crate::virtio::vsock::{
    Packet, Vsock, HOST_CID, OP_CREDIT_REQUEST, OP_CREDIT_UPDATE, OP_REQUEST, OP_RESPONSE, OP_RST,
    OP_RW, OP_SHUTDOWN, SHUTDOWN_BOTH,
};
use crate::virtio::{self, ID_VSOCK};
use crate::vsock_scenario::{refuse_stray, Conn};
use crate::{arch, irq, probe};

/// The host's readiness port and the agent's port.
const READY_PORT: u32 = 2696;
const AGENT_PORT: u32 = 2695;
/// Our source port for the readiness connection.
const READY_SRC_PORT: u32 = 49153;
/// `Ready { version: 1, agent: "boxlite-probe" }`.
pub const READY_FRAME: &[u8] = b"\x0f\x00\x00\x00\x01\x0dboxlite-probe";
/// `Event::Pong { version: 1, agent: "boxlite-probe" }` (Pong is variant 0).
const PONG_FRAME: &[u8] = b"\x10\x00\x00\x00\x00\x01\x0dboxlite-probe";
/// `Event::ShuttingDown` (variant 6).
const SHUTTING_DOWN_FRAME: &[u8] = b"\x01\x00\x00\x00\x06";
/// `Event::Error { message: "probe box: no commands" }` (variant 7).
const ERROR_FRAME: &[u8] = b"\x18\x00\x00\x00\x07\x16probe box: no commands";
/// A `Hello` starts with its length (4 bytes), the protocol version (1 byte while it is below
/// 128) and the request's variant: 0 ping, 1 exec, 2 shutdown.
const HELLO_PREFIX: usize = 6;
/// How long one look for a pending packet lasts.
const POLL: u64 = 1 << 16;

type Failure = (&'static str, &'static str);

pub fn run(cmdline: &[u8]) {
    if let Err((step, why)) = steps(cmdline) {
        probe!("idle-ready error {}: {}", step, why);
    }
}

fn steps(cmdline: &[u8]) -> Result<(), Failure> {
    let found = virtio::find(cmdline, ID_VSOCK, 0).map_err(|e| ("device", e))?;
    let mut vs = Vsock::init(found.transport).map_err(|e| ("init", e))?;
    signal_ready(&mut vs)?;
    probe!("idle-ready");
    irq::init();
    irq::route(found.irq, true).map_err(|e| ("irq route", e))?;
    let mut agent = Agent::None;
    loop {
        while let Ok(p) = vs.recv(POLL) {
            agent = handle(&mut vs, agent, &p)?;
        }
        // Read the count before the last look: a packet arriving after it raises the count,
        // and the wait below returns at once.
        let before = irq::DEVICE_IRQS.load(Ordering::SeqCst);
        vs.ack_interrupt();
        match vs.recv(POLL) {
            Ok(p) => agent = handle(&mut vs, agent, &p)?,
            Err(_) => {
                irq::wait_device_irq(before, &mut Deadline::after(deadline::LONG));
            }
        }
    }
}

/// Connects to the host's readiness port, sends the `Ready` frame and closes.
fn signal_ready(vs: &mut Vsock) -> Result<(), Failure> {
    let mut conn = Conn::new(READY_SRC_PORT, READY_PORT);
    conn.send(vs, OP_REQUEST, 0, b"")
        .map_err(|e| ("ready", e))?;
    let reply = conn.recv(vs, deadline::LONG).map_err(|e| ("ready", e))?;
    if reply.hdr.op != OP_RESPONSE {
        return Err(("ready", "the host refused the readiness connection"));
    }
    conn.send(vs, OP_RW, 0, READY_FRAME)
        .map_err(|e| ("ready", e))?;
    conn.send(vs, OP_SHUTDOWN, SHUTDOWN_BOTH, b"")
        .map_err(|e| ("ready", e))
}

/// The one agent connection served at a time, and the first bytes of its hello.
enum Agent {
    None,
    Open {
        conn: Conn,
        hello: [u8; HELLO_PREFIX],
        got: usize,
    },
}

fn handle(vs: &mut Vsock, agent: Agent, p: &Packet) -> Result<Agent, Failure> {
    let h = &p.hdr;
    let from_host = h.src_cid == HOST_CID && h.dst_cid == vs.cid;
    if from_host && h.op == OP_REQUEST && h.dst_port == AGENT_PORT {
        if let Agent::Open { conn, .. } = &agent {
            // One at a time: the older one goes.
            let mut old = Conn::new(conn.local_port, conn.peer_port);
            old.send(vs, OP_RST, 0, b"").map_err(|e| ("agent", e))?;
        }
        let mut conn = Conn::new(AGENT_PORT, h.src_port);
        conn.update_credit(h);
        conn.send(vs, OP_RESPONSE, 0, b"")
            .map_err(|e| ("agent", e))?;
        return Ok(Agent::Open {
            conn,
            hello: [0; HELLO_PREFIX],
            got: 0,
        });
    }
    let Agent::Open {
        mut conn,
        mut hello,
        mut got,
    } = agent
    else {
        refuse_stray(vs, p).map_err(|e| ("stray", e))?;
        return Ok(Agent::None);
    };
    if !(from_host && h.src_port == conn.peer_port && h.dst_port == conn.local_port) {
        refuse_stray(vs, p).map_err(|e| ("stray", e))?;
        return Ok(Agent::Open { conn, hello, got });
    }
    conn.update_credit(h);
    match h.op {
        OP_RW => {
            conn.fwd_cnt = conn.fwd_cnt.wrapping_add(h.len);
            for &b in p.data() {
                if got < HELLO_PREFIX {
                    hello[got] = b;
                    got += 1;
                    if got == HELLO_PREFIX {
                        answer(vs, &mut conn, hello[HELLO_PREFIX - 1])?;
                    }
                }
            }
            Ok(Agent::Open { conn, hello, got })
        }
        OP_CREDIT_REQUEST => {
            conn.send(vs, OP_CREDIT_UPDATE, 0, b"")
                .map_err(|e| ("agent", e))?;
            Ok(Agent::Open { conn, hello, got })
        }
        OP_SHUTDOWN => {
            conn.send(vs, OP_RST, 0, b"").map_err(|e| ("agent", e))?;
            Ok(Agent::None)
        }
        OP_RST => Ok(Agent::None),
        _ => Ok(Agent::Open { conn, hello, got }),
    }
}

/// Answers a hello whose request variant is `request`.
fn answer(vs: &mut Vsock, conn: &mut Conn, request: u8) -> Result<(), Failure> {
    match request {
        0 => conn.send(vs, OP_RW, 0, PONG_FRAME).map_err(|e| ("pong", e)),
        2 => {
            conn.send(vs, OP_RW, 0, SHUTTING_DOWN_FRAME)
                .map_err(|e| ("shutdown", e))?;
            probe!("idle-ready shutting down");
            arch::reset()
        }
        _ => {
            conn.send(vs, OP_RW, 0, ERROR_FRAME)
                .map_err(|e| ("exec", e))?;
            conn.send(vs, OP_SHUTDOWN, SHUTDOWN_BOTH, b"")
                .map_err(|e| ("exec", e))
        }
    }
}
