//! The timed workloads: open+read+close, `stat` and a full readdir, over the same file set on
//! any mount, on N threads, each run bounded in both time and operation count. Every operation's
//! latency is recorded (one clock read per operation: the end of one is the start of the next).

use std::ffi::CString;
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::rig::{cpath, Result};
use crate::stats::percentile_sorted;

/// One kind of operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// open(O_RDONLY), read to EOF, close, of a random file.
    OpenReadClose,
    /// The same with ioctl(TCGETS) after open, as CPython's `open()` does to ask isatty().
    OpenIsattyReadClose,
    /// stat of a random file.
    Stat,
    /// opendir, readdir to the end, closedir, of the mount's root.
    Readdir,
    /// Like `OpenReadClose`, but by name relative to the mount's root (openat on a descriptor
    /// of it): the path walk to the mount is left out, as for a pod that sees a CSI target at a
    /// short path of its own while the host reaches it through kubelet's long one. Used by the
    /// CSI bench, which shares this module.
    #[allow(dead_code)]
    OpenAtReadClose,
}

/// The files of one mount, as C strings, with what each operation must see.
pub struct FileSet {
    files: Vec<CString>,
    /// The files' names, for `Op::OpenAtReadClose`.
    names: Vec<CString>,
    dir: CString,
    /// Every file's size.
    size: usize,
    /// Entries in the directory, without `.` and `..`.
    entries: usize,
}

impl FileSet {
    pub fn new(dir: &Path, names: &[String], size: usize) -> Result<FileSet> {
        Ok(FileSet {
            files: names
                .iter()
                .map(|n| cpath(&dir.join(n)))
                .collect::<Result<_>>()?,
            names: names
                .iter()
                .map(|n| cpath(Path::new(n)))
                .collect::<Result<_>>()?,
            dir: cpath(dir)?,
            size,
            entries: names.len(),
        })
    }
}

/// The outcome of one run.
#[derive(Debug, Default)]
pub struct RunResult {
    pub ops: u64,
    pub errors: u64,
    pub secs: f64,
    /// Sorted latencies, nanoseconds.
    pub lat_ns: Vec<u32>,
}

impl RunResult {
    pub fn ops_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }

    pub fn p50_us(&self) -> f64 {
        percentile_sorted(&self.lat_ns, 50.0) / 1000.0
    }

    pub fn p99_us(&self) -> f64 {
        percentile_sorted(&self.lat_ns, 99.0) / 1000.0
    }
}

/// A small, fast PRNG (xorshift64*), one per thread, so the choice of file costs nanoseconds
/// and takes no lock.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as usize) % n
    }
}

/// open + read to EOF + close; returns the bytes read, or None on any error. With `isatty`,
/// also asks whether the file is a terminal (the answer, ENOTTY, is not checked).
fn open_read_close(at: libc::c_int, path: &CString, buf: &mut [u8], isatty: bool) -> Option<usize> {
    // SAFETY: `path` is a valid NUL-terminated string and `at` is AT_FDCWD or an open
    // directory; the fd is ours and closed below.
    let fd = unsafe { libc::openat(at, path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    if isatty {
        // SAFETY: `fd` is open; isatty only queries it.
        unsafe { libc::isatty(fd) };
    }
    let mut total = 0usize;
    let mut ok = true;
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            ok = false;
            break;
        }
        if n == 0 {
            break;
        }
        total += n as usize;
    }
    // SAFETY: `fd` was opened above and is closed once.
    unsafe { libc::close(fd) };
    ok.then_some(total)
}

fn stat_size(path: &CString) -> Option<usize> {
    // SAFETY: an all-zero `stat` is a valid value for the kernel to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is a valid, writable stat buffer.
    let rc = unsafe { libc::stat(path.as_ptr(), &mut st) };
    (rc == 0).then_some(st.st_size as usize)
}

/// Entries of `dir` other than `.` and `..`.
fn readdir_count(dir: &CString) -> Option<usize> {
    // SAFETY: `dir` is NUL-terminated; the stream is closed below.
    let d = unsafe { libc::opendir(dir.as_ptr()) };
    if d.is_null() {
        return None;
    }
    let mut n = 0;
    loop {
        // SAFETY: `d` is an open directory stream.
        let e = unsafe { libc::readdir(d) };
        if e.is_null() {
            break;
        }
        // SAFETY: readdir returned a valid entry whose d_name is NUL-terminated.
        let name = unsafe { std::ffi::CStr::from_ptr((*e).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            n += 1;
        }
    }
    // SAFETY: `d` is open and closed once.
    unsafe { libc::closedir(d) };
    Some(n)
}

/// Does one operation; true when it saw what it must (size, entry count).
/// `root` is an open descriptor of the mount's root for `Op::OpenAtReadClose`.
fn once(set: &FileSet, op: Op, rng: &mut Rng, buf: &mut [u8], root: libc::c_int) -> bool {
    let cwd = libc::AT_FDCWD;
    match op {
        Op::OpenReadClose => {
            open_read_close(cwd, &set.files[rng.next(set.files.len())], buf, false)
                == Some(set.size)
        }
        Op::OpenIsattyReadClose => {
            open_read_close(cwd, &set.files[rng.next(set.files.len())], buf, true) == Some(set.size)
        }
        Op::OpenAtReadClose => {
            open_read_close(root, &set.names[rng.next(set.names.len())], buf, false)
                == Some(set.size)
        }
        Op::Stat => stat_size(&set.files[rng.next(set.files.len())]) == Some(set.size),
        Op::Readdir => readdir_count(&set.dir) == Some(set.entries),
    }
}

/// Runs `op` on `threads` threads for `dur` or until `max_ops` operations in all, whichever
/// comes first.
pub fn run(set: &FileSet, op: Op, threads: usize, dur: Duration, max_ops: u64) -> RunResult {
    let threads = threads.max(1);
    let per_thread = (max_ops / threads as u64).max(1);
    let barrier = Barrier::new(threads);
    let parts: Vec<(u64, u64, f64, Vec<u32>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut rng =
                        Rng(0x9E37_79B9_7F4A_7C15 ^ ((t as u64 + 1) << 17) ^ fastrand::u64(1..));
                    let mut buf = vec![0u8; 4096];
                    let mut lat = Vec::with_capacity(per_thread.min(4_000_000) as usize);
                    let (mut ops, mut errors) = (0u64, 0u64);
                    // SAFETY: `set.dir` is NUL-terminated; the descriptor is closed below.
                    let root = unsafe {
                        libc::open(
                            set.dir.as_ptr(),
                            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                        )
                    };
                    barrier.wait();
                    let start = Instant::now();
                    let mut prev = start;
                    while ops < per_thread {
                        if !once(set, op, &mut rng, &mut buf, root) {
                            errors += 1;
                        }
                        let now = Instant::now();
                        if lat.len() < lat.capacity() {
                            lat.push(
                                now.duration_since(prev).as_nanos().min(u32::MAX as u128) as u32
                            );
                        }
                        prev = now;
                        ops += 1;
                        if now.duration_since(start) >= dur {
                            break;
                        }
                    }
                    if root >= 0 {
                        // SAFETY: `root` is ours and closed once.
                        unsafe { libc::close(root) };
                    }
                    (ops, errors, prev.duration_since(start).as_secs_f64(), lat)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut r = RunResult::default();
    for (ops, errors, secs, lat) in parts {
        r.ops += ops;
        r.errors += errors;
        r.secs = r.secs.max(secs);
        r.lat_ns.extend(lat);
    }
    r.lat_ns.sort_unstable();
    r
}

/// Reads one file whole, for checks and polling (not timed in a loop).
pub fn read_file(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}
