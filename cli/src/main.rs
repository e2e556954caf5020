//! The `cachesync` command: argument parsing and output only; the engine does the work.

mod app;
mod commands;
mod output;

fn main() {
    tune_malloc();
    let code = app::run();
    output::give_back_view();
    std::process::exit(code);
}

/// Sets glibc's trim threshold, which also turns off its sliding mmap threshold: otherwise,
/// once a large buffer (the list a scan grows) is freed, later large buffers come from the
/// heap and stay with the process after they are freed. At 100,000 files that was 25-45 MB
/// of the peak resident size of a status or a sync, for no measurable difference in time.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_malloc() {
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread
    // exists. A failure (0) leaves the defaults, which are correct, only larger.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
        // Buffers of a MiB (a read of a big remote file, both in this process and in the
        // helper) come from the heap and are reused: mapped fresh each time, every page of
        // each was a fault and a clearing (a 2 GiB file read back: 13.5 s against 7.7 s).
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        // Two arenas (one per core here) for every thread: a scan runs dozens of threads,
        // and memory freed in a thread's own arena stayed with it. First copy of 100,000
        // files: peak resident 193-210 MB with glibc's default (8 per core), 175-179 MB
        // with two, 169-173 MB with one (but about a tenth slower); of the Linux source
        // 267-274 MB against 218-228 MB with two. Status and a 1 GiB file: no change.
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}
