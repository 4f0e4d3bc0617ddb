//! Per-thread scratch, reused across slabs and chunks: on these machines fresh memory costs
//! page faults, and rayon's `*_init` adaptors allocate anew for every job they split off.

use std::cell::RefCell;

use ingest::SlabBuffer;

use crate::rank::Selection;

#[derive(Default)]
pub struct Scratch {
    pub slab: SlabBuffer,
    pub selection: Selection,
    /// Key positions kept for a row (the positive ones, for `nonzero`).
    pub keys: Vec<u32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch (`f` must not start parallel work of its own).
pub fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| f(&mut s.borrow_mut()))
}
