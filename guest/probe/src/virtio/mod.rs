//! Minimal polled virtio drivers: the virtio-mmio transport, split
//! virtqueues, and the block and vsock devices. Devices are found the way
//! Linux finds them on this VMM: `virtio_mmio.device=4K@0x<base>:<irq>`
//! words on the kernel command line.

pub mod blk;
pub mod mmio;
pub mod virtq;
pub mod vsock;

use mmio::Transport;

/// Device types (virtio 1.2, 5).
pub const ID_BLOCK: u32 = 2;
pub const ID_VSOCK: u32 = 19;

/// A device found on the command line.
pub struct Found {
    pub transport: Transport,
    /// Its interrupt line (an I/O APIC pin on this VMM).
    pub irq: u32,
}

/// The `n`-th (from 0) device of type `device_id`, in command-line order.
pub fn find(cmdline: &[u8], device_id: u32, n: usize) -> Result<Found, &'static str> {
    let mut seen = 0;
    for word in cmdline.split(|&b| b == b' ') {
        let Some(spec) = word.strip_prefix(b"virtio_mmio.device=") else {
            continue;
        };
        let (base, irq) = parse_spec(spec).ok_or("malformed virtio_mmio.device entry")?;
        let transport = Transport::new(base)?;
        if transport.device_id() != device_id {
            continue;
        }
        if seen == n {
            return Ok(Found { transport, irq });
        }
        seen += 1;
    }
    Err("no such device on the command line")
}

/// `4K@0x<hex base>:<decimal irq>` → (base, irq).
fn parse_spec(spec: &[u8]) -> Option<(u64, u32)> {
    let rest = spec.strip_prefix(b"4K@0x")?;
    let colon = rest.iter().position(|&b| b == b':')?;
    let base = parse_num(&rest[..colon], 16)?;
    let irq = parse_num(&rest[colon + 1..], 10)?;
    Some((base, u32::try_from(irq).ok()?))
}

fn parse_num(digits: &[u8], radix: u32) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &d in digits {
        let digit = char::from(d).to_digit(radix)?;
        value = value
            .checked_mul(u64::from(radix))?
            .checked_add(u64::from(digit))?;
    }
    Some(value)
}
