//! One virtio-blk request: parse the descriptor chain, run it against the disk, write the
//! status byte.
//!
//! A request is `struct virtio_blk_req { le32 type; le32 reserved; le64 sector; u8 data[];
//! u8 status; }` spread over the chain in any layout (VIRTIO_F_VERSION_1 implies
//! ANY_LAYOUT): the header and OUT data in the device-readable part, IN data and the status
//! byte in the device-writable part, the status being the chain's very last byte.
//! [`virtio_queue::Reader`]/[`virtio_queue::Writer`] hide the descriptor boundaries.
//!
//! Everything here is guest-controlled. The driver may also rewrite descriptors while we read
//! them; that can only make it corrupt its own memory, since every access goes through
//! bounds-checked guest memory.

use std::io::Write;

use log::{error, warn};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Reader, Writer};
use vm_memory::endian::{Le32, Le64};
use vm_memory::{
    Address, ByteValued, Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions,
};

use super::disk::{Disk, GuestSlice};
use crate::virtio::drain::Chain;

/// type, reserved, sector.
const HEADER_LEN: usize = 16;
/// The length of a GET_ID answer (VIRTIO_BLK_ID_BYTES).
pub(super) const ID_LEN: usize = 20;

/// Why a request did not complete with VIRTIO_BLK_S_OK.
#[derive(Debug)]
enum Failure {
    /// The guest sent something malformed or out of range: VIRTIO_BLK_S_IOERR.
    Invalid(String),
    /// The host could not do the I/O: VIRTIO_BLK_S_IOERR.
    Host(String),
    /// A request type this device does not implement: VIRTIO_BLK_S_UNSUPP.
    Unsupported(u32),
}

impl Failure {
    /// Logs the failure of request `head` and returns the guest-visible status.
    fn status(self, head: u16) -> u32 {
        match self {
            Failure::Invalid(reason) => {
                warn!("virtio-blk: request {head} refused: {reason}");
                VIRTIO_BLK_S_IOERR
            }
            Failure::Host(reason) => {
                error!("virtio-blk: request {head} failed: {reason}");
                VIRTIO_BLK_S_IOERR
            }
            Failure::Unsupported(request_type) => {
                warn!("virtio-blk: request {head} has unsupported type {request_type}");
                VIRTIO_BLK_S_UNSUPP
            }
        }
    }
}

/// The fixed part of a request.
struct Header {
    request_type: u32,
    sector: u64,
}

/// Serves the request in `chain`; returns the used length (bytes written to the guest,
/// status byte included). Data moves between the image and guest memory directly.
pub(super) fn handle_chain<'m>(
    mem: &'m GuestMemoryMmap,
    chain: Chain<'m>,
    disk: &Disk,
    id: &[u8; ID_LEN],
) -> u32 {
    let head = chain.head_index();
    let descriptors: Vec<Descriptor> = chain.clone().collect();
    let Some(status_addr) = status_address(&descriptors) else {
        warn!("virtio-blk: request {head} has no device-writable status byte at its end; returned unanswered");
        return 0;
    };
    let (status, data_written) = match serve(mem, &chain, &descriptors, disk, id) {
        Ok(written) => (VIRTIO_BLK_S_OK, written),
        Err((failure, written)) => (failure.status(head), written),
    };
    // Status values are small constants (0, 1, 2).
    let status = u8::try_from(status).unwrap_or(u8::MAX);
    if let Err(e) = mem.write_obj(status, status_addr) {
        warn!("virtio-blk: request {head}: cannot write its status byte: {e}; returned unanswered");
        return 0;
    }
    // Bounded by the chain length, which the queue keeps under 4 GiB.
    u32::try_from(data_written + 1).unwrap_or(u32::MAX)
}

/// The last byte of the chain, if the last descriptor is device-writable and not empty.
fn status_address(descriptors: &[Descriptor]) -> Option<GuestAddress> {
    let last = descriptors.last()?;
    if !last.is_write_only() || last.len() == 0 {
        return None;
    }
    last.addr()
        .0
        .checked_add(u64::from(last.len()) - 1)
        .map(GuestAddress)
}

/// Runs the request; returns the data bytes written to the guest, on failure too.
fn serve<'m>(
    mem: &'m GuestMemoryMmap,
    chain: &Chain<'m>,
    descriptors: &[Descriptor],
    disk: &Disk,
    id: &[u8; ID_LEN],
) -> Result<usize, (Failure, usize)> {
    let (header, reader, mut writer) = parse(mem, chain, descriptors).map_err(|f| (f, 0))?;
    let result = match header.request_type {
        VIRTIO_BLK_T_IN => read(
            mem,
            descriptors,
            disk,
            header.sector,
            writer.available_bytes(),
        ),
        VIRTIO_BLK_T_OUT => write(
            mem,
            descriptors,
            disk,
            header.sector,
            reader.available_bytes(),
        )
        .map(|()| 0),
        VIRTIO_BLK_T_FLUSH => flush(disk).map(|()| 0),
        VIRTIO_BLK_T_GET_ID => get_id(id, &mut writer).map(|()| writer.bytes_written()),
        other => Err(Failure::Unsupported(other)),
    };
    // On failure the guest learns of no data written: the used length is a lower bound.
    result.map_err(|f| (f, 0))
}

/// Splits the chain into header, OUT data and IN data (the writable part minus the status).
fn parse<'m>(
    mem: &'m GuestMemoryMmap,
    chain: &Chain<'m>,
    descriptors: &[Descriptor],
) -> Result<(Header, Reader<'m>, Writer<'m>), Failure> {
    // Spec 2.7.4.2: device-writable descriptors come after all device-readable ones.
    if descriptors
        .windows(2)
        .any(|pair| pair[0].is_write_only() && !pair[1].is_write_only())
    {
        return Err(Failure::Invalid(
            "a device-readable buffer follows a device-writable one".into(),
        ));
    }
    let mut reader = chain
        .clone()
        .reader(mem)
        .map_err(|e| Failure::Invalid(format!("device-readable buffers: {e}")))?;
    let mut writer = chain
        .clone()
        .writer(mem)
        .map_err(|e| Failure::Invalid(format!("device-writable buffers: {e}")))?;
    // The status byte is the writer's last byte (the last descriptor is writable); it is
    // written separately, so the data writer stops one byte short of it.
    let data_len = writer.available_bytes().saturating_sub(1);
    writer
        .split_at(data_len)
        .map_err(|e| Failure::Invalid(format!("device-writable buffers: {e}")))?;
    if reader.available_bytes() < HEADER_LEN {
        return Err(Failure::Invalid(format!(
            "header is {} bytes, needs {HEADER_LEN}",
            reader.available_bytes()
        )));
    }
    let wire: WireHeader = reader
        .read_obj()
        .map_err(|e| Failure::Invalid(format!("header: {e}")))?;
    let header = Header {
        request_type: wire.request_type.into(),
        sector: wire.sector.into(),
    };
    Ok((header, reader, writer))
}

/// A request's header as it lies in guest memory: `struct virtio_blk_outhdr`, little-endian.
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct WireHeader {
    request_type: Le32,
    ioprio: Le32,
    sector: Le64,
}

// SAFETY: little-endian integers laid out without padding (4 + 4 + 8 bytes, each naturally
// aligned); every bit pattern is a valid value.
unsafe impl ByteValued for WireHeader {}

const _: () = assert!(std::mem::size_of::<WireHeader>() == HEADER_LEN);

/// The byte offset of `len` bytes at `sector`, or why the range is refused.
fn range(disk: &Disk, sector: u64, len: usize) -> Result<u64, Failure> {
    let len = u64::try_from(len).unwrap_or(u64::MAX);
    disk.byte_range(sector, len).ok_or_else(|| {
        Failure::Invalid(format!(
            "{len} bytes at sector {sector} is not a non-empty run of whole sectors within the disk's {} sectors",
            disk.sectors
        ))
    })
}

/// The guest memory of `len` data bytes: those of the descriptors with direction `writable`,
/// after the first `skip` of them (the header of an OUT request).
fn data_slices<'m>(
    mem: &'m GuestMemoryMmap,
    descriptors: &[Descriptor],
    writable: bool,
    mut skip: usize,
    len: usize,
) -> Result<Vec<GuestSlice<'m>>, Failure> {
    let mut slices = Vec::new();
    let mut left = len;
    for desc in descriptors.iter().filter(|d| d.is_write_only() == writable) {
        if left == 0 {
            break;
        }
        // A u32 always fits a usize on the 64-bit hosts boxlite runs on.
        let desc_len = usize::try_from(desc.len()).unwrap_or(usize::MAX);
        let here = desc_len.min(skip);
        skip -= here;
        let take = (desc_len - here).min(left);
        if take == 0 {
            continue;
        }
        let start = desc
            .addr()
            .checked_add(here as u64)
            .ok_or_else(|| Failure::Invalid("a data buffer wraps the address space".into()))?;
        let access = if writable {
            Permissions::Write
        } else {
            Permissions::Read
        };
        let buffer_error = |e| Failure::Invalid(format!("data buffer: {e}"));
        for slice in mem.get_slices(start, take, access).map_err(buffer_error)? {
            slices.push(slice.map_err(buffer_error)?);
        }
        left -= take;
    }
    if left != 0 {
        return Err(Failure::Invalid(format!(
            "the data buffers hold {} of {len} bytes",
            len - left
        )));
    }
    Ok(slices)
}

/// VIRTIO_BLK_T_IN: image → guest, filling the whole IN data area; returns its length.
fn read(
    mem: &GuestMemoryMmap,
    descriptors: &[Descriptor],
    disk: &Disk,
    sector: u64,
    len: usize,
) -> Result<usize, Failure> {
    let offset = range(disk, sector, len)?;
    let slices = data_slices(mem, descriptors, true, 0, len)?;
    disk.read(&slices, offset).map_err(|e| {
        Failure::Host(format!(
            "reading {len} bytes of the image at byte {offset}: {e}"
        ))
    })?;
    Ok(len)
}

/// VIRTIO_BLK_T_OUT: guest → image, the whole OUT data area.
fn write(
    mem: &GuestMemoryMmap,
    descriptors: &[Descriptor],
    disk: &Disk,
    sector: u64,
    len: usize,
) -> Result<(), Failure> {
    if disk.read_only {
        // Spec 5.2.6.2: IOERR, and nothing written, when VIRTIO_BLK_F_RO is offered.
        return Err(Failure::Invalid("write to a read-only disk".into()));
    }
    let offset = range(disk, sector, len)?;
    let slices = data_slices(mem, descriptors, false, HEADER_LEN, len)?;
    disk.write(&slices, offset).map_err(|e| {
        Failure::Host(format!(
            "writing {len} bytes of the image at byte {offset}: {e}"
        ))
    })
}

/// VIRTIO_BLK_T_FLUSH: make completed writes durable.
fn flush(disk: &Disk) -> Result<(), Failure> {
    disk.flush()
        .map_err(|e| Failure::Host(format!("flushing the image: {e}")))
}

/// VIRTIO_BLK_T_GET_ID: the serial, NUL-padded, truncated to the buffer given.
fn get_id(id: &[u8; ID_LEN], writer: &mut Writer<'_>) -> Result<(), Failure> {
    let len = writer.available_bytes().min(ID_LEN);
    if len == 0 {
        return Err(Failure::Invalid("GET_ID without a data buffer".into()));
    }
    writer
        .write_all(&id[..len])
        .map_err(|e| Failure::Invalid(format!("writing guest memory: {e}")))
}
