//! The virtio-blk configuration space (struct virtio_blk_config, virtio 1.2, 5.2.4).

/// The fields boxlite fills: capacity, size_max, seg_max, geometry, blk_size. Later fields
/// (topology, discard, ...) belong to features not offered and read as zero.
const CONFIG_LEN: usize = 24;

/// The config space, laid out once: nothing in it changes while the device exists.
#[derive(Debug)]
pub(super) struct BlockConfig {
    bytes: [u8; CONFIG_LEN],
}

impl BlockConfig {
    /// Capacity in 512-byte sectors, maximum data segments per request, logical block size.
    pub(super) fn new(capacity: u64, seg_max: u32, blk_size: u32) -> BlockConfig {
        let mut bytes = [0u8; CONFIG_LEN];
        bytes[0..8].copy_from_slice(&capacity.to_le_bytes());
        // 8..12 size_max: VIRTIO_BLK_F_SIZE_MAX is not offered.
        bytes[12..16].copy_from_slice(&seg_max.to_le_bytes());
        // 16..20 geometry: VIRTIO_BLK_F_GEOMETRY is not offered.
        bytes[20..24].copy_from_slice(&blk_size.to_le_bytes());
        BlockConfig { bytes }
    }

    /// Copies the bytes at `offset` into `data`; anything past the end reads as zero.
    pub(super) fn read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Ok(start) = usize::try_from(offset) else {
            return;
        };
        if let Some(available) = self.bytes.get(start..) {
            let len = available.len().min(data.len());
            data[..len].copy_from_slice(&available[..len]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_little_endian_at_their_spec_offsets() {
        let config = BlockConfig::new(0x0102_0304_0506_0708, 254, 512);
        let mut capacity = [0u8; 8];
        config.read(0, &mut capacity);
        assert_eq!(u64::from_le_bytes(capacity), 0x0102_0304_0506_0708);
        let mut word = [0u8; 4];
        config.read(12, &mut word);
        assert_eq!(u32::from_le_bytes(word), 254);
        config.read(20, &mut word);
        assert_eq!(u32::from_le_bytes(word), 512);
        config.read(8, &mut word);
        assert_eq!(word, [0; 4]);
    }

    #[test]
    fn partial_and_out_of_range_reads_are_zero_filled() {
        let config = BlockConfig::new(0x1122, 1, 512);
        let mut data = [0xffu8; 4];
        config.read(21, &mut data);
        assert_eq!(data, [2, 0, 0, 0]);
        config.read(24, &mut data);
        assert_eq!(data, [0; 4]);
        config.read(u64::MAX, &mut data);
        assert_eq!(data, [0; 4]);
        let mut byte = [0u8; 1];
        config.read(1, &mut byte);
        assert_eq!(byte, [0x11]);
    }
}
