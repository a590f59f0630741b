//! Per-thread scratch buffers for the native kernels' temporaries (a row block's i32 sums,
//! centred i16 rows, unsigned byte rows): allocated once per thread and reused by every later call, so a layer
//! pays neither `malloc` nor the zeroing of a fresh buffer (which was ~6% of a native
//! EfficientNet-Lite0 pass). The contents are stale: callers overwrite every element they
//! read. A nested use on the same thread (none does) gets a fresh buffer, never a shared one.
//!
//! The same idea for whole outputs: an executor hands the buffers of values no later node
//! reads back with [`recycle_f32`] / [`recycle_i8`], and kernels that store every element of
//! their output take it from [`output_f32`] / [`output_i8`] (best fit among the recycled
//! ones, stale contents) instead of a zeroed allocation. The zeroing of fresh outputs was ~11%
//! of a float EfficientNet-Lite0 pass and ~4% of an int8 one (the allocator hands back freed
//! heap memory, which `calloc` must clear).

// wasm SIMD builds use only the recycling entry point (a no-op there: their kernels allocate).
#![cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))]

use std::cell::{Cell, RefCell};

thread_local! {
    static I32: Cell<Vec<i32>> = const { Cell::new(Vec::new()) };
    static I16: Cell<Vec<i16>> = const { Cell::new(Vec::new()) };
    static U8: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    static F32_OUTPUTS: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    static I8_OUTPUTS: RefCell<Vec<Vec<i8>>> = const { RefCell::new(Vec::new()) };
}

/// Recycled output buffers kept per thread and type at most (a network's live values at
/// once, about).
const OUTPUTS_KEPT: usize = 16;

type OutputPool<T> = std::thread::LocalKey<RefCell<Vec<Vec<T>>>>;

/// A buffer of `len` f32 values for an output the caller overwrites completely: a recycled
/// one (stale contents; the smallest that holds `len`) or, when none does, a zeroed one.
/// (Best fit by length, not capacity: growing a truncated buffer back would write the gap,
/// which measured more zeroing than fresh buffers do in an int8 Lite0 pass under callgrind.)
pub(crate) fn output_f32(len: usize) -> Vec<f32> {
    take_output(&F32_OUTPUTS, len)
}

/// [`output_f32`] for int8 outputs.
pub(crate) fn output_i8(len: usize) -> Vec<i8> {
    take_output(&I8_OUTPUTS, len)
}

/// Gives a dead value's buffer back for [`output_f32`] on this thread; past
/// [`OUTPUTS_KEPT`] buffers the smallest is freed.
pub fn recycle_f32(v: Vec<f32>) {
    give_back(&F32_OUTPUTS, v)
}

/// [`recycle_f32`] for int8 values ([`output_i8`]).
pub fn recycle_i8(v: Vec<i8>) {
    give_back(&I8_OUTPUTS, v)
}

fn take_output<T: Copy + Default>(pool: &'static OutputPool<T>, len: usize) -> Vec<T> {
    let reused = pool.with(|pool| {
        let mut pool = pool.try_borrow_mut().ok()?;
        let best = (0..pool.len()).filter(|&i| pool[i].len() >= len).min_by_key(|&i| pool[i].len())?;
        Some(pool.swap_remove(best))
    });
    match reused {
        Some(mut v) => {
            v.truncate(len);
            v
        }
        None => vec![T::default(); len],
    }
}

fn give_back<T>(pool: &'static OutputPool<T>, v: Vec<T>) {
    // wasm SIMD kernels take no recycled outputs: keeping buffers would only hold memory.
    if v.is_empty() || cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
        return;
    }
    pool.with(|pool| {
        let Ok(mut pool) = pool.try_borrow_mut() else { return };
        pool.push(v);
        if pool.len() > OUTPUTS_KEPT {
            if let Some(smallest) = (0..pool.len()).min_by_key(|&i| pool[i].len()) {
                pool.swap_remove(smallest);
            }
        }
    });
}

/// Runs `f` on a scratch slice of `len` i32 values (stale contents).
pub(crate) fn with_i32<R>(len: usize, f: impl FnOnce(&mut [i32]) -> R) -> R {
    with(&I32, len, f)
}

/// Runs `f` on a scratch slice of `len` i16 values (stale contents).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn with_i16<R>(len: usize, f: impl FnOnce(&mut [i16]) -> R) -> R {
    with(&I16, len, f)
}

/// Runs `f` on a scratch slice of `len` bytes (stale contents).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn with_u8<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    with(&U8, len, f)
}

fn with<T: Copy + Default, R>(
    key: &'static std::thread::LocalKey<Cell<Vec<T>>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    // Taken out of the cell while in use: a nested call finds it empty and allocates its own.
    let mut buf = key.with(Cell::take);
    if buf.len() < len {
        buf.resize(len, T::default());
    }
    let r = f(&mut buf[..len]);
    key.with(|c| c.set(buf));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_uses_get_separate_buffers() {
        with_i32(4, |outer| {
            outer.fill(7);
            with_i32(4, |inner| inner.fill(9));
            assert_eq!(outer, &[7; 4]);
        });
        // The buffer is reused with its stale contents; the length is what was asked.
        with_i32(2, |b| assert_eq!(b.len(), 2));
    }

    // wasm SIMD builds keep no recycled buffers (their kernels allocate their outputs).
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    #[test]
    fn recycled_outputs_are_the_smallest_that_fit() {
        recycle_f32(vec![1.0; 100]);
        recycle_f32(vec![2.0; 10]);
        recycle_f32(vec![3.0; 50]);
        let v = output_f32(40);
        assert_eq!((v.len(), v[0]), (40, 3.0));
        // Nothing recycled holds 1000 values: a fresh zeroed buffer.
        assert_eq!(output_f32(1000), vec![0.0; 1000]);
        let v = output_f32(100);
        assert_eq!((v.len(), v[99]), (100, 1.0));
        // int8 buffers have their own pool.
        recycle_i8(vec![5; 64]);
        assert_eq!(output_f32(20), vec![0.0; 20]);
        assert_eq!(output_i8(8), vec![5; 8]);
        assert_eq!(output_i8(8), vec![0; 8]);
    }
}
