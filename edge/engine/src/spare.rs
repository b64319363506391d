//! Spare isolates: blank isolates made ahead of time on a thread of their own, so a
//! function's first request on a worker skips isolate creation and no worker ever stops
//! serving to make one.
//!
//! Each worker keeps one spare. When a cold start takes it, the worker orders the next
//! from the factory thread (low priority) and goes on serving; the factory deserializes
//! the snapshot (~3.5 ms of CPU) and hands the isolate over. A V8 isolate may move
//! between threads as long as one thread uses it at a time; the worker re-points V8's
//! stack guard at its own stack before the isolate runs anything
//! ([`SpareIsolate::set_stack_limit_here`]). Spares have the default heap limit, so
//! they serve the functions that keep it.

use tokio::sync::oneshot;

use crate::isolate::BootError;
use crate::isolate::SpareIsolate;
use crate::limits::Limits;

/// The heap limit spares are made with: the default one.
pub(crate) fn heap_bytes() -> usize {
    Limits::DEFAULT.heap_bytes()
}

/// A spare isolate in transit from the factory thread to a worker.
struct InTransit(SpareIsolate);

// SAFETY: a `SpareIsolate` is a blank `JsRuntime` (exited, entered by no thread) plus the
// `Rc` of its module loader, whose only other clone is inside that runtime. It moves as
// a whole: after the factory sends it, nothing on the factory thread refers to it, so
// the non-atomic reference counts are only ever touched by one thread at a time.
#[expect(
    unsafe_code,
    reason = "hands a blank isolate from the factory thread to a worker"
)]
unsafe impl Send for InTransit {}

struct Order {
    reply: oneshot::Sender<Result<InTransit, BootError>>,
}

/// Orders spare isolates from the factory thread; cheap to clone, one per worker.
#[derive(Clone)]
pub(crate) struct SpareOrders(std::sync::mpsc::Sender<Order>);

impl SpareOrders {
    /// Waits for a blank isolate, ready to run on the calling thread.
    pub(crate) async fn make(&self) -> Result<SpareIsolate, BootError> {
        let stopped = || BootError::Runtime("the spare-isolate thread has stopped".into());
        let (reply, made) = oneshot::channel();
        self.0.send(Order { reply }).map_err(|_| stopped())?;
        let InTransit(mut spare) = made.await.map_err(|_| stopped())??;
        spare.set_stack_limit_here();
        Ok(spare)
    }
}

/// Starts the factory thread; it stops once every [`SpareOrders`] is gone.
pub(crate) fn start_factory() -> std::io::Result<SpareOrders> {
    let (orders, incoming) = std::sync::mpsc::channel::<Order>();
    std::thread::Builder::new()
        .name("outpost-spares".into())
        .spawn(move || {
            run_at_low_priority();
            for order in incoming {
                if order.reply.is_closed() {
                    continue;
                }
                let made = SpareIsolate::new(heap_bytes()).map(InTransit);
                // If the worker stopped meanwhile, the isolate is disposed of here.
                let _ = order.reply.send(made);
            }
        })?;
    Ok(SpareOrders(orders))
}

/// Lowers the calling thread's priority (nice 10): making spares yields to the workers
/// whenever they have work, so it never delays their requests noticeably. Not the idle
/// class: with a CPU hog on the worker's core, one cold start then waited 637 ms — most
/// likely on a process-wide V8 lock held by the starved factory in mid-creation.
fn run_at_low_priority() {
    #[cfg(target_os = "linux")]
    {
        /// Niceness of the factory thread: about a tenth of a worker's share under contention.
        const NICE: libc::c_int = 10;
        #[expect(unsafe_code, reason = "libc call to lower this thread's priority")]
        // SAFETY: on Linux, PRIO_PROCESS with id 0 names the calling thread.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICE) };
        if rc != 0 {
            tracing::debug!(target: "outpost::engine", "spare-isolate thread keeps its priority: {}", std::io::Error::last_os_error());
        }
    }
}
