//! The virtio-vsock packet: its 44-byte header and the checks that turn a guest descriptor
//! chain into a packet (TX) or into a buffer the device may fill (RX).
//!
//! Everything here is read from guest memory and is untrusted: a malformed chain is reported as
//! a [`PacketError`], never a panic. The caller still returns such a chain to the used ring (with
//! length 0) so the driver gets its buffer back.

use std::io::{Read, Write};

use virtio_queue::{DescriptorChain, Reader, Writer};
use vm_memory::endian::{Le16, Le32, Le64};
use vm_memory::{ByteValued, GuestMemoryMmap};

/// Size of the virtio-vsock packet header (`struct virtio_vsock_hdr`).
pub const HEADER_SIZE: usize = 44;

/// The largest payload the device reads from, or writes into, one packet (Linux's
/// `VIRTIO_VSOCK_MAX_PKT_BUF_SIZE`). TX packets announcing more are dropped.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// `type` of a stream socket packet, the only type this device speaks.
pub const TYPE_STREAM: u16 = 1;

/// Connection request.
pub const OP_REQUEST: u16 = 1;
/// Connection accepted.
pub const OP_RESPONSE: u16 = 2;
/// Connection reset (refused or aborted).
pub const OP_RST: u16 = 3;
/// The sender will receive and/or send no more (see [`SHUTDOWN_RCV`], [`SHUTDOWN_SEND`]).
pub const OP_SHUTDOWN: u16 = 4;
/// Stream data.
pub const OP_RW: u16 = 5;
/// Credit information, unsolicited or answering a request.
pub const OP_CREDIT_UPDATE: u16 = 6;
/// Asks the peer for a credit update.
pub const OP_CREDIT_REQUEST: u16 = 7;

/// `SHUTDOWN` flag: the sender will receive no more data.
pub const SHUTDOWN_RCV: u32 = 1;
/// `SHUTDOWN` flag: the sender will send no more data.
pub const SHUTDOWN_SEND: u32 = 2;

/// Why a guest descriptor chain was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PacketError {
    /// The chain's head could not be read at all.
    #[error("the descriptor chain is empty")]
    EmptyChain,
    /// The chain loops or points past the descriptor table (it ended on a NEXT flag).
    #[error("the descriptor chain loops or runs past the descriptor table")]
    BrokenChain,
    /// A TX chain had a device-writable descriptor, or an RX chain a device-readable one.
    #[error("the chain has a descriptor of the wrong direction for this queue")]
    WrongDirection,
    /// A descriptor points outside guest memory.
    #[error("a descriptor points outside guest memory")]
    BadAddress,
    /// The chain is too small to hold the 44-byte header.
    #[error("the chain holds {0} bytes, fewer than the 44-byte header")]
    TooShort(usize),
    /// The header announces a payload larger than [`MAX_PAYLOAD`].
    #[error("the header announces a {0}-byte payload, over the 64 KiB limit")]
    PayloadTooLarge(u32),
    /// The header announces more payload than the chain holds.
    #[error("the header announces a {len}-byte payload but the chain holds {available}")]
    PayloadTruncated {
        /// `len` from the header.
        len: u32,
        /// Bytes left in the chain after the header.
        available: usize,
    },
    /// Copying from or to guest memory failed.
    #[error("guest memory access failed: {0}")]
    Memory(String),
}

/// A virtio-vsock packet header (`struct virtio_vsock_hdr`, all fields little-endian).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketHeader {
    /// Source context ID.
    pub src_cid: u64,
    /// Destination context ID.
    pub dst_cid: u64,
    /// Source port.
    pub src_port: u32,
    /// Destination port.
    pub dst_port: u32,
    /// Payload length.
    pub len: u32,
    /// Socket type ([`TYPE_STREAM`]).
    pub type_: u16,
    /// Operation (`OP_*`).
    pub op: u16,
    /// Operation flags (`SHUTDOWN_*` for [`OP_SHUTDOWN`]).
    pub flags: u32,
    /// Receive buffer space the sender has allocated for this connection.
    pub buf_alloc: u32,
    /// Bytes the sender has consumed from that buffer since the connection started.
    pub fwd_cnt: u32,
}

/// [`PacketHeader`] as it lies in guest memory: `struct virtio_vsock_hdr`, packed,
/// little-endian.
#[derive(Clone, Copy, Default)]
#[repr(C, packed)]
struct WireHeader {
    src_cid: Le64,
    dst_cid: Le64,
    src_port: Le32,
    dst_port: Le32,
    len: Le32,
    type_: Le16,
    op: Le16,
    flags: Le32,
    buf_alloc: Le32,
    fwd_cnt: Le32,
}

// SAFETY: a packed struct of little-endian integers: no padding, and every bit pattern is a
// valid value.
unsafe impl ByteValued for WireHeader {}

const _: () = assert!(std::mem::size_of::<WireHeader>() == HEADER_SIZE);

impl PacketHeader {
    /// Decodes a header from its wire form.
    pub fn from_bytes(b: &[u8; HEADER_SIZE]) -> PacketHeader {
        let mut wire = WireHeader::default();
        wire.as_mut_slice().copy_from_slice(b);
        PacketHeader {
            src_cid: { wire.src_cid }.into(),
            dst_cid: { wire.dst_cid }.into(),
            src_port: { wire.src_port }.into(),
            dst_port: { wire.dst_port }.into(),
            len: { wire.len }.into(),
            type_: { wire.type_ }.into(),
            op: { wire.op }.into(),
            flags: { wire.flags }.into(),
            buf_alloc: { wire.buf_alloc }.into(),
            fwd_cnt: { wire.fwd_cnt }.into(),
        }
    }

    /// Encodes the header in its wire form.
    pub fn to_bytes(self) -> [u8; HEADER_SIZE] {
        let wire = WireHeader {
            src_cid: self.src_cid.into(),
            dst_cid: self.dst_cid.into(),
            src_port: self.src_port.into(),
            dst_port: self.dst_port.into(),
            len: self.len.into(),
            type_: self.type_.into(),
            op: self.op.into(),
            flags: self.flags.into(),
            buf_alloc: self.buf_alloc.into(),
            fwd_cnt: self.fwd_cnt.into(),
        };
        let mut b = [0u8; HEADER_SIZE];
        b.copy_from_slice(wire.as_slice());
        b
    }
}

type Chain<'a> = DescriptorChain<&'a GuestMemoryMmap>;

/// Walks the chain once and checks that it ends properly and that every descriptor goes in the
/// expected direction (`writable`: device-writable, for the RX queue).
fn check_chain(chain: &Chain<'_>, writable: bool) -> Result<(), PacketError> {
    let mut last = None;
    for desc in chain.clone() {
        if desc.is_write_only() != writable {
            return Err(PacketError::WrongDirection);
        }
        last = Some(desc);
    }
    match last {
        None => Err(PacketError::EmptyChain),
        // The iterator stops on a descriptor that still says NEXT only when the chain loops
        // (its length ran out), points past the table, or has a bad indirect table.
        Some(desc) if desc.has_next() => Err(PacketError::BrokenChain),
        Some(_) => Ok(()),
    }
}

/// Reads a TX packet: checks the chain, reads the header, and copies the payload the header
/// announces into `payload` (cleared first). Returns the header.
pub fn read_tx_packet(
    mem: &GuestMemoryMmap,
    chain: Chain<'_>,
    payload: &mut Vec<u8>,
) -> Result<PacketHeader, PacketError> {
    check_chain(&chain, false)?;
    let mut reader = Reader::new(mem, chain).map_err(|_| PacketError::BadAddress)?;
    let total = reader.available_bytes();
    if total < HEADER_SIZE {
        return Err(PacketError::TooShort(total));
    }
    let mut raw = [0u8; HEADER_SIZE];
    reader
        .read_exact(&mut raw)
        .map_err(|e| PacketError::Memory(e.to_string()))?;
    let header = PacketHeader::from_bytes(&raw);
    let len = header.len as usize;
    if len > MAX_PAYLOAD {
        return Err(PacketError::PayloadTooLarge(header.len));
    }
    let available = reader.available_bytes();
    if len > available {
        return Err(PacketError::PayloadTruncated {
            len: header.len,
            available,
        });
    }
    payload.clear();
    payload.resize(len, 0);
    reader
        .read_exact(payload)
        .map_err(|e| PacketError::Memory(e.to_string()))?;
    Ok(header)
}

/// A guest RX buffer, checked and ready to receive one packet.
pub struct RxBuffer<'a> {
    writer: Writer<'a>,
}

impl<'a> RxBuffer<'a> {
    /// Checks an RX chain: all descriptors device-writable, inside guest memory, and room for
    /// at least the header.
    pub fn new(mem: &'a GuestMemoryMmap, chain: Chain<'a>) -> Result<RxBuffer<'a>, PacketError> {
        check_chain(&chain, true)?;
        let writer = Writer::new(mem, chain).map_err(|_| PacketError::BadAddress)?;
        let total = writer.available_bytes();
        if total < HEADER_SIZE {
            return Err(PacketError::TooShort(total));
        }
        Ok(RxBuffer { writer })
    }

    /// The payload this buffer can take after the header, capped at [`MAX_PAYLOAD`].
    pub fn payload_capacity(&self) -> usize {
        (self.writer.available_bytes() - HEADER_SIZE).min(MAX_PAYLOAD)
    }

    /// Writes `header` and `payload` (at most [`payload_capacity`](Self::payload_capacity)
    /// bytes) and returns the number of bytes written, the used-ring length.
    pub fn write(mut self, header: &PacketHeader, payload: &[u8]) -> Result<u32, PacketError> {
        let err = |e: std::io::Error| PacketError::Memory(e.to_string());
        self.writer.write_all(&header.to_bytes()).map_err(err)?;
        self.writer.write_all(payload).map_err(err)?;
        // At most HEADER_SIZE + MAX_PAYLOAD bytes: fits in u32.
        Ok(u32::try_from(self.writer.bytes_written()).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_utils::guest_memory as test_memory;
    use crate::virtio::vsock::test_utils::{desc, R, W};
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::{Queue, QueueT};
    use vm_memory::{Bytes, GuestAddress};

    fn header() -> PacketHeader {
        PacketHeader {
            src_cid: 3,
            dst_cid: 2,
            src_port: 1000,
            dst_port: 52,
            len: 5,
            type_: TYPE_STREAM,
            op: OP_RW,
            flags: 0,
            buf_alloc: 4096,
            fwd_cnt: 7,
        }
    }

    /// Links `descs` into one chain and parses it as a TX packet.
    fn parse_tx(
        mem: &GuestMemoryMmap,
        descs: &[RawDescriptor],
    ) -> Result<PacketHeader, PacketError> {
        let vq = MockSplitQueue::new(mem, 16);
        let chain = vq.build_desc_chain(descs).unwrap();
        read_tx_packet(mem, chain, &mut Vec::new())
    }

    /// Stores `descs` as they are (flags and `next` included) and parses the chain at 0.
    fn parse_raw_tx(
        mem: &GuestMemoryMmap,
        descs: &[RawDescriptor],
    ) -> Result<PacketHeader, PacketError> {
        let vq = MockSplitQueue::new(mem, 16);
        vq.add_desc_chains(descs, 0).unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let chain = q.pop_descriptor_chain(mem).unwrap();
        read_tx_packet(mem, chain, &mut Vec::new())
    }

    #[test]
    fn header_round_trips_through_its_wire_form() {
        let h = header();
        let bytes = h.to_bytes();
        assert_eq!(bytes[0], 3);
        assert_eq!(bytes[8], 2);
        assert_eq!(u16::from_le_bytes([bytes[30], bytes[31]]), OP_RW);
        assert_eq!(PacketHeader::from_bytes(&bytes), h);
    }

    #[test]
    fn tx_packet_with_header_and_payload_in_separate_descriptors() {
        let mem = test_memory();
        mem.write_slice(&header().to_bytes(), GuestAddress(0x10_0000))
            .unwrap();
        mem.write_slice(b"hello", GuestAddress(0x20_0000)).unwrap();
        let vq = MockSplitQueue::new(&mem, 16);
        let chain = vq
            .build_desc_chain(&[desc(0x10_0000, 44, R), desc(0x20_0000, 5, R)])
            .unwrap();
        let mut payload = Vec::new();
        let h = read_tx_packet(&mem, chain, &mut payload).unwrap();
        assert_eq!(h, header());
        assert_eq!(payload, b"hello");
    }

    #[test]
    fn tx_packet_in_one_descriptor_and_zero_length_descriptors_are_accepted() {
        let mem = test_memory();
        let mut bytes = header().to_bytes().to_vec();
        bytes.extend_from_slice(b"hello");
        mem.write_slice(&bytes, GuestAddress(0x10_0000)).unwrap();
        let vq = MockSplitQueue::new(&mem, 16);
        let chain = vq
            .build_desc_chain(&[desc(0x30_0000, 0, R), desc(0x10_0000, 49, R)])
            .unwrap();
        let mut payload = Vec::new();
        assert_eq!(read_tx_packet(&mem, chain, &mut payload).unwrap(), header());
        assert_eq!(payload, b"hello");
    }

    #[test]
    fn tx_chain_shorter_than_the_header_is_refused() {
        let mem = test_memory();
        let r = parse_tx(&mem, &[desc(0x10_0000, 43, R)]);
        assert_eq!(r, Err(PacketError::TooShort(43)));
        let r = parse_tx(&mem, &[desc(0x10_0000, 0, R)]);
        assert_eq!(r, Err(PacketError::TooShort(0)));
    }

    #[test]
    fn tx_chain_with_a_writable_descriptor_is_refused() {
        let mem = test_memory();
        mem.write_slice(&header().to_bytes(), GuestAddress(0x10_0000))
            .unwrap();
        let r = parse_tx(&mem, &[desc(0x10_0000, 44, R), desc(0x20_0000, 5, W)]);
        assert_eq!(r, Err(PacketError::WrongDirection));
    }

    #[test]
    fn tx_payload_longer_than_announced_limit_or_chain_is_refused() {
        let mem = test_memory();
        let mut h = header();
        h.len = (MAX_PAYLOAD + 1) as u32;
        mem.write_slice(&h.to_bytes(), GuestAddress(0x10_0000))
            .unwrap();
        let r = parse_tx(&mem, &[desc(0x10_0000, 44, R)]);
        assert_eq!(r, Err(PacketError::PayloadTooLarge(h.len)));

        h.len = 100;
        mem.write_slice(&h.to_bytes(), GuestAddress(0x10_0000))
            .unwrap();
        let r = parse_tx(&mem, &[desc(0x10_0000, 44, R), desc(0x20_0000, 99, R)]);
        assert_eq!(
            r,
            Err(PacketError::PayloadTruncated {
                len: 100,
                available: 99
            })
        );
    }

    #[test]
    fn tx_descriptor_outside_guest_memory_is_refused() {
        let mem = test_memory();
        let r = parse_tx(&mem, &[desc(0xffff_0000_0000, 44, R)]);
        assert_eq!(r, Err(PacketError::BadAddress));
        // Straddling the end of memory.
        let r = parse_tx(&mem, &[desc(0xff_fff0, 44, R)]);
        assert_eq!(r, Err(PacketError::BadAddress));
    }

    #[test]
    fn looping_or_dangling_chains_are_refused() {
        let mem = test_memory();
        mem.write_slice(&header().to_bytes(), GuestAddress(0x10_0000))
            .unwrap();
        // Descriptor 0 -> 1 -> 0 -> ...: NEXT flag set on both, `next` pointing back.
        let looped = [
            RawDescriptor::from(SplitDescriptor::new(0x10_0000, 44, 1, 1)),
            RawDescriptor::from(SplitDescriptor::new(0x20_0000, 5, 1, 0)),
        ];
        assert_eq!(parse_raw_tx(&mem, &looped), Err(PacketError::BrokenChain));
        // NEXT pointing past the 16-entry table.
        let dangling = [RawDescriptor::from(SplitDescriptor::new(
            0x10_0000, 44, 1, 200,
        ))];
        assert_eq!(parse_raw_tx(&mem, &dangling), Err(PacketError::BrokenChain));
    }

    #[test]
    fn rx_buffer_takes_header_and_payload_and_reports_the_length() {
        let mem = test_memory();
        let vq = MockSplitQueue::new(&mem, 16);
        let chain = vq
            .build_desc_chain(&[desc(0x10_0000, 44, W), desc(0x20_0000, 100, W)])
            .unwrap();
        let rx = RxBuffer::new(&mem, chain).unwrap();
        assert_eq!(rx.payload_capacity(), 100);
        let h = header();
        assert_eq!(rx.write(&h, b"hello").unwrap(), 49);
        let mut raw = [0u8; HEADER_SIZE];
        mem.read_slice(&mut raw, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(PacketHeader::from_bytes(&raw), h);
        let mut data = [0u8; 5];
        mem.read_slice(&mut data, GuestAddress(0x20_0000)).unwrap();
        assert_eq!(&data, b"hello");
    }

    #[test]
    fn rx_buffer_capacity_is_capped_at_the_packet_limit() {
        let mem = test_memory();
        let vq = MockSplitQueue::new(&mem, 16);
        let chain = vq
            .build_desc_chain(&[desc(0x10_0000, 0x2_0000, W)])
            .unwrap();
        assert_eq!(
            RxBuffer::new(&mem, chain).unwrap().payload_capacity(),
            MAX_PAYLOAD
        );
    }

    #[test]
    fn bad_rx_buffers_are_refused() {
        let mem = test_memory();
        let cases: [(&[RawDescriptor], PacketError); 4] = [
            (&[desc(0x10_0000, 43, W)], PacketError::TooShort(43)),
            (&[desc(0x10_0000, 0, W)], PacketError::TooShort(0)),
            (&[desc(0x10_0000, 44, R)], PacketError::WrongDirection),
            (&[desc(0xffff_0000_0000, 64, W)], PacketError::BadAddress),
        ];
        for (descs, want) in cases {
            let vq = MockSplitQueue::new(&mem, 16);
            let chain = vq.build_desc_chain(descs).unwrap();
            assert_eq!(RxBuffer::new(&mem, chain).err(), Some(want));
        }
    }
}
