//! A fork-join pool for the kernels: `parallel_for(tasks, f)` runs `f(0..tasks)` on every
//! thread the engine has and returns when all are done. Each task writes its own part of the
//! output and integer sums do not depend on who computes them, so results are bit-identical
//! for any thread count (tested in the browser: 1 against N threads).
//!
//! # Threads in WebAssembly (`target_feature = "atomics"`: the threaded module)
//! The page's threads are Web Workers, each an instance of the same module on one shared
//! memory (wasm-bindgen gives each its own stack and thread-locals). The calling thread sets
//! the job and takes tasks itself; helper workers sit in [`helper_loop`] (polling `WAKE` for a
//! few tens of microseconds, then a `memory.atomic.wait32` on it) and take tasks as they wake. Why a pool of our own rather than rayon
//! (wasm-bindgen-rayon): the kernels need one primitive, a parallel loop over row blocks, and
//! this is 100 lines without a dependency tree or a nightly toolchain feature beyond atomics.
//!
//! The protocol, all in [`CLAIM`] (epoch in the high 32 bits, next task in the low 32):
//! ```text
//! caller: DONE = 0; JOB = f; TASKS = n; CLAIM = (epoch + 1, 0) (release); WAKE += 1; notify
//!         claim and run tasks like a helper; spin until DONE == n
//! helper: v = CLAIM (acquire); read TASKS, JOB; if next(v) < TASKS:
//!         CAS CLAIM v -> v + 1, on success run f(next(v)); DONE += 1 (release)
//! ```
//! A helper's CAS succeeds only while tasks of the epoch it read are unclaimed, and the caller
//! writes the next job only after all tasks are done, so a successful claim always runs the
//! job it read: stale helpers fail their CAS and re-read. The caller spins rather than waits
//! (browsers forbid `Atomics.wait` on the page's main thread), briefly: it waits only for
//! tasks already running. A job started inside a task (none does) runs on the calling thread.
//!
//! # Native threads (the CLI, tests, benchmarks)
//! A rayon pool of [`threads`] threads (default: every core the OS gives the process, or
//! `EDGETUNE_THREADS`; the CLI's `--threads`). [`parallel_for`] runs its tasks there, and
//! [`map_items`] spreads independent items (images: feature extraction, evaluation,
//! calibration) over the same pool, results in index order. Inside an item, a kernel's
//! [`parallel_for`] runs on the same pool by work stealing, so nesting never oversubscribes.
//!
//! Without atomics (the single-threaded wasm module) `parallel_for` and `map_items` are plain loops.

/// The number of threads a job is split for (1 until [`set_threads`]).
pub fn threads() -> usize {
    imp::threads()
}

/// Sets how many threads jobs are split for (in wasm: the caller plus `n - 1` helpers that
/// JavaScript starts; natively: the rayon pool's size); clamped to `1..=MAX_THREADS`; always 1
/// in the wasm module without atomics. Natively, a pool that cannot be started (the OS refuses
/// threads) leaves one thread and says why on stderr.
pub fn set_threads(n: usize) {
    imp::set_threads(n)
}

/// `[f(0), .., f(n - 1)]`, computed on the pool's threads, in index order: each item is
/// computed by the same code whichever thread runs it, so the result does not depend on the
/// thread count. The first error by index is returned (not whichever thread failed first).
pub fn map_items<T: Send>(
    n: usize,
    f: &(dyn Fn(usize) -> crate::base::error::Result<T> + Sync),
) -> crate::base::error::Result<Vec<T>> {
    let results = if n <= 1 || threads() <= 1 { (0..n).map(f).collect() } else { imp::map_items(n, f) };
    results.into_iter().collect()
}

/// [`map_items`] in chunks of `chunk` items, calling `done(items so far)` after each chunk
/// (a progress bar's position) on the calling thread; same results.
pub fn map_items_chunked<T: Send>(
    n: usize,
    chunk: usize,
    f: &(dyn Fn(usize) -> crate::base::error::Result<T> + Sync),
    done: &mut dyn FnMut(usize),
) -> crate::base::error::Result<Vec<T>> {
    let chunk = chunk.max(1);
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        out.extend(map_items(len, &|i| f(start + i))?);
        start += len;
        done(start);
    }
    Ok(out)
}

/// Runs `f` (a whole pass: many kernels) as one of the pool's own threads, so each kernel's
/// [`parallel_for`] starts from inside the pool: the calling thread takes tasks itself and
/// hands none across threads to wait on (natively, from outside the pool, every kernel call
/// went to the pool and back: two thread wake-ups per kernel). A plain call elsewhere.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    imp::install(f)
}

/// Most threads a job is split for.
pub const MAX_THREADS: usize = 16;

/// Runs `f(i)` for every `i in 0..tasks`, spread over the pool's threads.
pub fn parallel_for(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    if tasks <= 1 || threads() <= 1 {
        (0..tasks).for_each(f);
        return;
    }
    imp::parallel_for(tasks, f)
}

/// A chunk length that splits `len` elements into about two tasks per thread, but no chunk
/// shorter than `min` (below that, waking a thread costs more than it saves); `len` itself
/// when single-threaded.
pub fn chunk_len(len: usize, min: usize) -> usize {
    match threads() {
        0 | 1 => len.max(1),
        t => len.div_ceil(2 * t).max(min).max(1),
    }
}

/// Splits `data` into chunks of `chunk` elements (the last may be shorter) and runs
/// `f(index, chunk)` on each, in parallel: the safe form of disjoint parallel writes.
pub fn parallel_chunks_mut<T: Send>(data: &mut [T], chunk: usize, f: &(dyn Fn(usize, &mut [T]) + Sync)) {
    let chunk = chunk.max(1);
    let len = data.len();
    let base = SharedPtr(data.as_mut_ptr());
    parallel_for(len.div_ceil(chunk), &|i| {
        let start = i * chunk;
        let end = (start + chunk).min(len);
        // SAFETY: task i alone gets elements start..end of `data`, which outlives the job
        // (parallel_for returns after every task), so the slices never overlap or dangle.
        let part = unsafe { core::slice::from_raw_parts_mut(base.get().add(start), end - start) };
        f(i, part);
    });
}

/// A pointer that tasks share; each dereferences a disjoint range ([`parallel_chunks_mut`]).
struct SharedPtr<T>(*mut T);
impl<T> SharedPtr<T> {
    fn get(&self) -> *mut T {
        self.0
    }
}
// SAFETY: only used by parallel_chunks_mut, whose tasks touch disjoint elements of a `T: Send` slice.
unsafe impl<T: Send> Sync for SharedPtr<T> {}

/// A helper worker's life: waits for jobs and runs their tasks, forever.
#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
pub fn helper_loop() -> ! {
    imp::helper_loop()
}

#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
mod imp {
    use core::arch::wasm32::{memory_atomic_notify, memory_atomic_wait32};
    use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};

    static THREADS: AtomicUsize = AtomicUsize::new(1);
    static CLAIM: AtomicU64 = AtomicU64::new(0);
    static TASKS: AtomicUsize = AtomicUsize::new(0);
    static DONE: AtomicUsize = AtomicUsize::new(0);
    /// The job's `&dyn Fn` as its (data, vtable) words.
    static JOB: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
    /// The futex word helpers sleep on; bumped for every job.
    pub(super) static WAKE: AtomicU32 = AtomicU32::new(0);
    static IN_JOB: AtomicBool = AtomicBool::new(false);

    type Job = &'static (dyn Fn(usize) + Sync);

    pub use super::items::map_items;

    pub fn threads() -> usize {
        THREADS.load(Relaxed)
    }

    pub fn install<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    pub fn set_threads(n: usize) {
        THREADS.store(n.clamp(1, super::MAX_THREADS), Relaxed);
    }

    /// Claims and runs tasks of the current job until none is left.
    fn work() {
        loop {
            let v = CLAIM.load(Acquire);
            let tasks = TASKS.load(Acquire);
            let next = (v & 0xffff_ffff) as usize;
            if next >= tasks {
                return;
            }
            let words = [JOB[0].load(Acquire), JOB[1].load(Acquire)];
            if CLAIM.compare_exchange_weak(v, v + 1, AcqRel, Relaxed).is_ok() {
                // SAFETY: the claim succeeded, so `words` are the live job's (module docs),
                // written from a `&dyn Fn` that outlives every task of its job.
                let f: Job = unsafe { core::mem::transmute::<[usize; 2], Job>(words) };
                f(next);
                DONE.fetch_add(1, Release);
            }
        }
    }

    pub fn parallel_for(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if IN_JOB.swap(true, Acquire) {
            // A job inside a job (or a second caller): run it here.
            (0..tasks).for_each(f);
            return;
        }
        // SAFETY: the `'static` is a lie the job never acts on: this function returns only
        // after every task has run (DONE == tasks), and no helper calls `f` after that.
        let words = unsafe { core::mem::transmute::<&(dyn Fn(usize) + Sync), [usize; 2]>(f) };
        DONE.store(0, Relaxed);
        JOB[0].store(words[0], Relaxed);
        JOB[1].store(words[1], Relaxed);
        TASKS.store(tasks, Relaxed);
        let epoch = (CLAIM.load(Relaxed) >> 32) + 1;
        CLAIM.store(epoch << 32, Release);
        WAKE.fetch_add(1, Release);
        // SAFETY: WAKE is a live, aligned i32-sized atomic in linear memory.
        unsafe { memory_atomic_notify(WAKE.as_ptr() as *mut i32, u32::MAX) };
        work();
        while DONE.load(Acquire) < tasks {
            core::hint::spin_loop();
        }
        IN_JOB.store(false, Release);
    }

    /// Polls of WAKE before a helper sleeps: a network's layers follow each other within
    /// microseconds, and waking a sleeping worker costs tens of them, so a helper watches for
    /// the next job for a while (some tens of microseconds) first.
    const SPINS: u32 = 1 << 15;

    pub fn helper_loop() -> ! {
        loop {
            let seen = WAKE.load(Acquire);
            work();
            let mut spins = 0;
            while spins < SPINS && WAKE.load(Acquire) == seen {
                core::hint::spin_loop();
                spins += 1;
            }
            if spins == SPINS {
                // Sleeps until a job bumps WAKE (returns at once if one already has).
                // SAFETY: as above; -1 waits without a timeout.
                unsafe { memory_atomic_wait32(WAKE.as_ptr() as *mut i32, seen as i32, -1) };
            }
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod items {
    /// Items run one after another in wasm: the threaded module's helpers serve the kernels'
    /// jobs, one job at a time.
    pub fn map_items<T>(n: usize, f: &dyn Fn(usize) -> T) -> Vec<T> {
        (0..n).map(f).collect()
    }
}

#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
mod imp {
    pub use super::items::map_items;
    pub fn threads() -> usize {
        1
    }
    pub fn install<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
    pub fn set_threads(_: usize) {}
    pub fn parallel_for(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        (0..tasks).for_each(f)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::sync::{Arc, Mutex, PoisonError};

    use rayon::prelude::*;

    /// The pool and its size; `None` until first used (then the default size).
    static POOL: Mutex<Option<(usize, Option<Arc<rayon::ThreadPool>>)>> = Mutex::new(None);

    /// `EDGETUNE_THREADS` when set to a number, else every core the process may use.
    fn default_threads() -> usize {
        std::env::var("EDGETUNE_THREADS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// A pool of `n` threads (none for 1: the caller runs everything).
    fn build(n: usize) -> (usize, Option<Arc<rayon::ThreadPool>>) {
        let n = n.clamp(1, super::MAX_THREADS);
        if n == 1 {
            return (1, None);
        }
        match rayon::ThreadPoolBuilder::new().num_threads(n).thread_name(|i| format!("edgetune-{i}")).build() {
            Ok(p) => (n, Some(Arc::new(p))),
            Err(e) => {
                eprintln!("warning: could not start {n} threads ({e}); running on one");
                (1, None)
            }
        }
    }

    /// The pool's size once it exists (0 before): what [`threads`] reads on every kernel
    /// call without taking the lock.
    static SIZE: AtomicUsize = AtomicUsize::new(0);

    fn current() -> (usize, Option<Arc<rayon::ThreadPool>>) {
        let mut g = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        let p = g.get_or_insert_with(|| build(default_threads())).clone();
        SIZE.store(p.0, Relaxed);
        p
    }

    pub fn threads() -> usize {
        match SIZE.load(Relaxed) {
            0 => current().0,
            n => n,
        }
    }

    pub fn set_threads(n: usize) {
        let mut g = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        if g.as_ref().map(|p| p.0) != Some(n.clamp(1, super::MAX_THREADS)) {
            *g = Some(build(n));
        }
        SIZE.store(g.as_ref().map_or(0, |p| p.0), Relaxed);
    }

    pub fn parallel_for(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        match current().1 {
            Some(pool) => pool.install(|| (0..tasks).into_par_iter().for_each(f)),
            None => (0..tasks).for_each(f),
        }
    }

    pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
        match current().1 {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    pub fn map_items<T: Send>(n: usize, f: &(dyn Fn(usize) -> T + Sync)) -> Vec<T> {
        match current().1 {
            // One item per task: images are milliseconds each, far above a task's cost.
            Some(pool) => pool.install(|| (0..n).into_par_iter().with_max_len(1).map(f).collect()),
            None => (0..n).map(f).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_slice_once() {
        let mut v = vec![0u32; 103];
        parallel_chunks_mut(&mut v, 10, &|i, part| {
            assert!(part.len() == 10 || (i == 10 && part.len() == 3));
            part.iter_mut().for_each(|x| *x += 1 + i as u32);
        });
        for (k, &x) in v.iter().enumerate() {
            assert_eq!(x, 1 + (k / 10) as u32);
        }
    }
}
