//! Checked handles: every object the C side holds is a generation-tagged id into one registry,
//! never a pointer, so a NULL, freed, stale or foreign handle is reported, not dereferenced.
//!
//! An id packs the object's kind (bits 56..64), its slot's generation (bits 32..56, never 0)
//! and the slot index (bits 0..32). Freeing bumps the slot's generation, so an old id stops
//! matching even after the slot is reused; id 0 is never handed out.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};

/// What a handle refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Runtime = 1,
    Options = 2,
    Box = 3,
    Exec = 4,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Runtime => "runtime",
            Kind::Options => "options",
            Kind::Box => "box",
            Kind::Exec => "exec",
        }
    }

    fn from_tag(tag: u64) -> Option<Kind> {
        [Kind::Runtime, Kind::Options, Kind::Box, Kind::Exec]
            .into_iter()
            .find(|k| *k as u64 == tag)
    }
}

/// One registered object: its kind, the runtime it belongs to (0 for none) and its value.
struct Slot {
    generation: u32,
    kind: Kind,
    owner: u64,
    object: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

struct Registry {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    slots: Vec::new(),
    free: Vec::new(),
});

const GENERATION_MASK: u32 = 0x00ff_ffff;

/// The registry is only changed by single pushes and field writes, so a panic elsewhere while
/// it was locked cannot leave it half-updated.
fn registry() -> MutexGuard<'static, Registry> {
    boxlite_proto::sync::lock(&REGISTRY)
}

fn pack(kind: Kind, generation: u32, index: u32) -> u64 {
    ((kind as u64) << 56) | (u64::from(generation) << 32) | u64::from(index)
}

/// Registers `object` as a `kind` owned by runtime `owner` (0: none); returns its id.
pub(crate) fn insert<T: Send + Sync + 'static>(kind: Kind, owner: u64, object: Arc<T>) -> u64 {
    let mut reg = registry();
    let index = match reg.free.pop() {
        Some(index) => index,
        None => {
            let index = u32::try_from(reg.slots.len()).unwrap_or(u32::MAX);
            reg.slots.push(Slot {
                generation: 1,
                kind,
                owner,
                object: None,
            });
            index
        }
    };
    let slot = &mut reg.slots[index as usize];
    slot.kind = kind;
    slot.owner = owner;
    slot.object = Some(object);
    pack(kind, slot.generation, index)
}

fn unpack(id: u64, kind: Kind) -> Result<(u32, u32)> {
    if id == 0 {
        return Err(Error::InvalidHandle(format!(
            "a NULL (0) {} handle",
            kind.name()
        )));
    }
    let tag = id >> 56;
    if tag != kind as u64 {
        let what = Kind::from_tag(tag).map_or("not a boxlite handle", Kind::name);
        return Err(Error::InvalidHandle(format!(
            "handle {id:#x} is not a {} handle ({what})",
            kind.name()
        )));
    }
    let generation = ((id >> 32) as u32) & GENERATION_MASK;
    Ok((generation, id as u32))
}

fn stale(id: u64, kind: Kind) -> Error {
    Error::InvalidHandle(format!(
        "{} handle {id:#x} was freed or never existed",
        kind.name()
    ))
}

/// The object of handle `id`, which must be a live `kind`, and its owner.
pub(crate) fn get<T: Send + Sync + 'static>(id: u64, kind: Kind) -> Result<(Arc<T>, u64)> {
    let (generation, index) = unpack(id, kind)?;
    let reg = registry();
    let slot = reg
        .slots
        .get(index as usize)
        .filter(|s| s.generation == generation && s.kind == kind)
        .ok_or_else(|| stale(id, kind))?;
    let object = slot.object.clone().ok_or_else(|| stale(id, kind))?;
    let owner = slot.owner;
    drop(reg);
    let object = object
        .downcast::<T>()
        .map_err(|_| Error::Internal(format!("handle {id:#x} holds another type")))?;
    Ok((object, owner))
}

fn release(reg: &mut Registry, index: u32) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
    let slot = &mut reg.slots[index as usize];
    let object = slot.object.take()?;
    slot.generation = match (slot.generation + 1) & GENERATION_MASK {
        0 => 1,
        g => g,
    };
    reg.free.push(index);
    Some(object)
}

/// Unregisters handle `id`; returns its object (dropped by the caller, outside the lock).
pub(crate) fn remove<T: Send + Sync + 'static>(id: u64, kind: Kind) -> Result<Arc<T>> {
    let (generation, index) = unpack(id, kind)?;
    let mut reg = registry();
    let live = reg
        .slots
        .get(index as usize)
        .is_some_and(|s| s.generation == generation && s.kind == kind && s.object.is_some());
    if !live {
        return Err(stale(id, kind));
    }
    let object = release(&mut reg, index).ok_or_else(|| stale(id, kind))?;
    drop(reg);
    object
        .downcast::<T>()
        .map_err(|_| Error::Internal(format!("handle {id:#x} held another type")))
}

/// Unregisters every `kind` object owned by runtime `owner`; returns them.
pub(crate) fn remove_owned<T: Send + Sync + 'static>(owner: u64, kind: Kind) -> Vec<Arc<T>> {
    let mut reg = registry();
    let indices: Vec<u32> = (0..reg.slots.len())
        .filter(|&i| {
            let s = &reg.slots[i];
            s.object.is_some() && s.kind == kind && s.owner == owner
        })
        .filter_map(|i| u32::try_from(i).ok())
        .collect();
    let objects: Vec<_> = indices
        .into_iter()
        .filter_map(|i| release(&mut reg, i))
        .collect();
    drop(reg);
    objects
        .into_iter()
        .filter_map(|o| o.downcast::<T>().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_foreign_and_null_handles_are_refused() {
        let id = insert(Kind::Options, 0, Arc::new(5u32));
        assert_eq!(*get::<u32>(id, Kind::Options).unwrap().0, 5);
        assert!(matches!(
            get::<u32>(id, Kind::Box),
            Err(Error::InvalidHandle(_))
        ));
        assert!(matches!(
            get::<u32>(0, Kind::Options),
            Err(Error::InvalidHandle(_))
        ));
        assert!(matches!(
            get::<u32>(12345, Kind::Options),
            Err(Error::InvalidHandle(_))
        ));
        remove::<u32>(id, Kind::Options).unwrap();
        assert!(matches!(
            get::<u32>(id, Kind::Options),
            Err(Error::InvalidHandle(_))
        ));
        assert!(matches!(
            remove::<u32>(id, Kind::Options),
            Err(Error::InvalidHandle(_))
        ));
        // The slot is reused under a new generation: the old id still does not match.
        let again = insert(Kind::Options, 0, Arc::new(6u32));
        assert_ne!(again, id);
        assert!(get::<u32>(id, Kind::Options).is_err());
        assert_eq!(*get::<u32>(again, Kind::Options).unwrap().0, 6);
        remove::<u32>(again, Kind::Options).unwrap();
    }

    #[test]
    fn a_runtime_sweep_takes_only_its_objects() {
        let a = insert(Kind::Box, 77, Arc::new(1u8));
        let b = insert(Kind::Box, 78, Arc::new(2u8));
        assert_eq!(remove_owned::<u8>(77, Kind::Box).len(), 1);
        assert!(get::<u8>(a, Kind::Box).is_err());
        assert_eq!(*get::<u8>(b, Kind::Box).unwrap().0, 2);
        remove::<u8>(b, Kind::Box).unwrap();
    }
}
