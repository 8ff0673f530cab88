//! The process's allocator: mimalloc (v2) rather than the C library's. Tokio aligns a task and
//! a socket's registration to 128 bytes, which glibc serves by splitting larger chunks (a
//! 256-byte aligned block costs about 455 bytes), while mimalloc's size classes are aligned as
//! they are; and mimalloc v2 keeps a burst's freed memory to itself less than v3 does. Built
//! without transparent huge pages (`no_thp`): mimalloc would otherwise advise them for its
//! arena, and the resident memory of a proxy holding idle connections would grow 2 MiB at a
//! time (no change in CPU per request measured). See docs/BENCHMARKS.md, idle connections.
//!
//! Called directly rather than through the `mimalloc` crate, which takes mimalloc's aligned
//! path for every allocation: for the alignments `malloc` already guarantees that path only
//! adds checks, about 140 instructions on a 2.5 KB block (a request's boxed state, made once
//! per request).

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc,
    mi_zalloc_aligned,
};

/// The alignment every mimalloc block of at least this size has (`MI_MAX_ALIGN_SIZE`).
const PLAIN: usize = 16;

/// mimalloc as the global allocator.
pub struct Mimalloc;

/// Whether a plain (unaligned) call serves `layout`: mimalloc's blocks are aligned to 16
/// bytes, or to their size when smaller (blocks come in multiples of 8).
fn plain(layout: &Layout) -> bool {
    layout.align() <= PLAIN && layout.align() <= layout.size()
}

// SAFETY: each method passes the layout's size (and, where a plain call would not honour it,
// its alignment) to the mimalloc call made for it, which returns null or a block of at least
// that size and alignment; `dealloc` and `realloc` take only pointers those calls returned.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl
        unsafe {
            if plain(&layout) {
                mi_malloc(layout.size()) as *mut u8
            } else {
                mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl
        unsafe {
            if plain(&layout) {
                mi_zalloc(layout.size()) as *mut u8
            } else {
                mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: see the impl
        unsafe { mi_free(ptr as *mut c_void) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl
        unsafe {
            if layout.align() <= PLAIN && layout.align() <= new_size {
                mi_realloc(ptr as *mut c_void, new_size) as *mut u8
            } else {
                mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_have_the_alignment_asked_for() {
        let a = Mimalloc;
        for (size, align) in [
            (1, 1),
            (8, 8),
            (24, 8),
            (16, 16),
            (256, 128),
            (2496, 8),
            (4096, 4096),
        ] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a non-zero size; the block is freed with the layout it was made with
            #[allow(unsafe_code)]
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "size {size} align {align}");
                let p = a.realloc(p, layout, size * 2);
                assert_eq!(p as usize % align, 0, "grown: size {size} align {align}");
                a.dealloc(p, Layout::from_size_align(size * 2, align).unwrap());
            }
        }
    }
}
