//! The CPU watchdog: a thread outside every isolate that terminates JavaScript running past its CPU budget.
//!
//! Each worker thread owns a [`SliceClock`]. A "slice" is one uninterrupted run of
//! JavaScript (a dispatch, or one turn of an isolate's event loop). The worker marks a
//! slice's start and end (no syscalls on that path); the watchdog samples the worker
//! thread's CPU clock every [`Watchdog::TICK`] and calls `terminate_execution` on the
//! isolate once the slice has used more CPU than its budget.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use deno_core::v8::IsolateHandle;

/// What the watchdog needs to know about the slice running on one worker thread.
pub struct SliceClock {
    /// The worker thread's CPU-time clock.
    cpu_clock: libc::clockid_t,
    running: Mutex<Running>,
    fired: AtomicBool,
}

#[derive(Default)]
struct Running {
    /// Odd while a slice runs; bumped at every start and end.
    seq: u64,
    budget: Duration,
    isolate: Option<IsolateHandle>,
}

/// Token for a started slice.
#[must_use]
pub struct Slice(());

impl SliceClock {
    /// A clock for the calling thread (call it on the worker thread).
    pub fn for_current_thread() -> std::io::Result<SliceClock> {
        let mut cpu_clock: libc::clockid_t = 0;
        #[expect(unsafe_code, reason = "libc call to look up this thread's CPU clock")]
        // SAFETY: pthread_self() is always valid for the calling thread; the out pointer is a local.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut cpu_clock) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        Ok(SliceClock {
            cpu_clock,
            running: Mutex::new(Running::default()),
            fired: AtomicBool::new(false),
        })
    }

    /// Marks the start of a run of JavaScript in `isolate` allowed `budget` of CPU.
    pub fn begin(&self, isolate: IsolateHandle, budget: Duration) -> Slice {
        let mut running = self.lock();
        running.seq += 1;
        running.budget = budget;
        running.isolate = Some(isolate);
        Slice(())
    }

    /// Marks the end of the run; true if the watchdog terminated it.
    pub fn end(&self, _slice: Slice) -> bool {
        {
            let mut running = self.lock();
            running.seq += 1;
            running.isolate = None;
        }
        self.fired.swap(false, Ordering::AcqRel)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        // A panic while holding this lock leaves only plain data behind; keep going.
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn thread_cpu(&self) -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        #[expect(unsafe_code, reason = "libc call to read a thread's CPU clock")]
        // SAFETY: the clock id came from pthread_getcpuclockid for a thread that outlives
        // the watchdog's use of it (the engine stops the watchdog before its workers).
        let rc = unsafe { libc::clock_gettime(self.cpu_clock, &mut ts) };
        if rc != 0 {
            return Duration::ZERO;
        }
        Duration::new(
            u64::try_from(ts.tv_sec).unwrap_or(0),
            u32::try_from(ts.tv_nsec).unwrap_or(0),
        )
    }
}

/// The watchdog thread; stops when dropped.
pub struct Watchdog {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// How often the watchdog samples the workers' CPU clocks (the enforcement granularity).
    pub const TICK: Duration = Duration::from_millis(2);

    /// Starts watching `clocks`.
    pub fn start(clocks: Vec<Arc<SliceClock>>) -> std::io::Result<Watchdog> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("outpost-watchdog".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    // Per clock: the slice seen last tick and the thread's CPU time when first seen.
                    let mut seen: Vec<(u64, Duration)> = vec![(0, Duration::ZERO); clocks.len()];
                    while !stop.load(Ordering::Acquire) {
                        std::thread::sleep(Self::TICK);
                        for (clock, seen) in clocks.iter().zip(seen.iter_mut()) {
                            check(clock, seen);
                        }
                    }
                }
            })?;
        Ok(Watchdog {
            stop,
            thread: Some(thread),
        })
    }
}

fn check(clock: &SliceClock, seen: &mut (u64, Duration)) {
    let running = clock.lock();
    if running.seq.is_multiple_of(2) {
        return;
    }
    let now = clock.thread_cpu();
    if running.seq != seen.0 {
        *seen = (running.seq, now);
        return;
    }
    if now.saturating_sub(seen.1) > running.budget
        && let Some(isolate) = &running.isolate
    {
        isolate.terminate_execution();
        clock.fired.store(true, Ordering::Release);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
