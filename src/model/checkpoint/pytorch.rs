//! PyTorch `torch.save` files: the zip container and the legacy (pre-1.6) pickle container.
//! (being written)
use super::{Checkpoint, ReadSeek};
use crate::model::LoadError;

pub fn sniff_legacy(_head: &[u8]) -> bool {
    false
}

pub fn open_zip(_reader: Box<dyn ReadSeek>) -> Result<Box<dyn Checkpoint>, LoadError> {
    Err(LoadError::NotACheckpoint(
        "PyTorch zip container not yet readable".into(),
    ))
}

pub fn open_legacy(_reader: Box<dyn ReadSeek>) -> Result<Box<dyn Checkpoint>, LoadError> {
    Err(LoadError::NotACheckpoint(
        "PyTorch legacy container not yet readable".into(),
    ))
}
