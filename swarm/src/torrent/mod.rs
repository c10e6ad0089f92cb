//! One torrent: which pieces we have and want, which blocks to request, the choking of peers,
//! where bytes live on disk, and the task that ties it together.

pub mod bitfield;
pub mod choker;
pub mod core;
pub mod env;
pub mod picker;
pub mod piece_buf;
pub mod resume;
pub mod resume_store;
pub mod selection;
pub mod status;
pub mod storage;
pub mod task;
