//! The global allocator of e2d's binaries, and its settings, made once at
//! start by the server (`e2d`) and the load generator (`e2d-bench`).
//!
//! mimalloc gives freed memory back to the system 10 ms after it is freed.
//! A member under kube-apiserver's load builds and frees a response of
//! megabytes for every page of a list, so each next one faulted its pages
//! in (and the kernel zeroed them) again: a tenth of a member's CPU. The
//! load generator, which decodes those pages, did the same: a sixth of its
//! CPU went to faulting pages in. Kept for a second, freed memory is
//! reused while the load lasts and still goes back soon after it stops.
//! The peak barely moves, as what is kept is what the next allocation
//! takes first (229 to 237 MiB after a million puts of 256 B).

use std::ffi::c_long;

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

/// The allocator type each binary declares as its `#[global_allocator]`.
pub use mimalloc::MiMalloc;

/// How long freed memory stays with the allocator before going back.
const PURGE_DELAY_MS: c_long = 1000;

/// mimalloc v2's `mi_option_purge_delay`, which its Rust bindings name no
/// constant for.
const MI_OPTION_PURGE_DELAY: mi_option_t = 15;

/// mimalloc's own default purge delay, by which [`MI_OPTION_PURGE_DELAY`]
/// is recognised before it is changed.
const MIMALLOC_PURGE_DELAY_DEFAULT_MS: c_long = 10;

/// Sets the allocator's options, unless the environment set them
/// (`MIMALLOC_PURGE_DELAY`, read by mimalloc itself).
///
/// # Safety
///
/// mimalloc's options are plain integers that `mi_option_set` writes
/// without synchronisation: no other thread may allocate through mimalloc
/// meanwhile. A binary's `main` calls this first, before it starts any
/// thread.
pub unsafe fn configure() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: the caller keeps other threads out of mimalloc (above).
    unsafe {
        // An option of another meaning (another mimalloc version) is left
        // alone rather than set to a delay.
        if mi_option_get(MI_OPTION_PURGE_DELAY) == MIMALLOC_PURGE_DELAY_DEFAULT_MS {
            mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_is_the_option_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            // mimalloc took the environment's value; configure keeps it.
            return;
        }
        // SAFETY: reading an option is a plain load.
        let before = unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(
            before, MIMALLOC_PURGE_DELAY_DEFAULT_MS,
            "mimalloc's purge delay is no longer option {MI_OPTION_PURGE_DELAY} with its default"
        );
        // SAFETY: the global allocator of this test binary is the system's,
        // so no other test thread allocates through mimalloc.
        unsafe { configure() };
        // SAFETY: as above.
        let after = unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(after, PURGE_DELAY_MS);
    }
}
