//! Per-thread scratch buffers for the native kernels' temporaries (a row block's i32 sums,
//! centred i16 rows): allocated once per thread and reused by every later call, so a layer
//! pays neither `malloc` nor the zeroing of a fresh buffer (which was ~6% of a native
//! EfficientNet-Lite0 pass). The contents are stale: callers overwrite every element they
//! read. A nested use on the same thread (none does) gets a fresh buffer, never a shared one.

use std::cell::Cell;

thread_local! {
    static I32: Cell<Vec<i32>> = const { Cell::new(Vec::new()) };
    static I16: Cell<Vec<i16>> = const { Cell::new(Vec::new()) };
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
}
