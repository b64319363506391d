//! Spare isolates: blank isolates made ahead of time on a thread of their own, so a
//! function's first request on a worker skips isolate creation and no worker ever stops
//! serving to make one.
//!
//! Each worker keeps one spare. When a cold start takes it, the worker orders the next
//! from the factory thread and goes on serving; the factory deserializes the snapshot
//! (~3.5 ms of CPU) and hands the isolate over. A V8 isolate may move between threads
//! as long as one thread uses it at a time; the worker re-points V8's stack guard at its
//! own stack before the isolate runs anything ([`SpareIsolate::set_stack_limit_here`]).

use tokio::sync::oneshot;

use crate::isolate::BootError;
use crate::isolate::SpareIsolate;

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
    heap_bytes: usize,
    reply: oneshot::Sender<Result<InTransit, BootError>>,
}

/// Orders spare isolates from the factory thread; cheap to clone, one per worker.
#[derive(Clone)]
pub(crate) struct SpareOrders(std::sync::mpsc::Sender<Order>);

impl SpareOrders {
    /// Waits for a blank isolate with this heap cap, ready to run on the calling thread.
    pub(crate) async fn make(&self, heap_bytes: usize) -> Result<SpareIsolate, BootError> {
        let (reply, made) = oneshot::channel();
        self.0
            .send(Order { heap_bytes, reply })
            .map_err(|_| BootError::Runtime("the spare-isolate thread has stopped".into()))?;
        let InTransit(mut spare) = made
            .await
            .map_err(|_| BootError::Runtime("the spare-isolate thread has stopped".into()))??;
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
            run_when_idle();
            for order in incoming {
                if order.reply.is_closed() {
                    continue;
                }
                let made = SpareIsolate::new(order.heap_bytes).map(InTransit);
                // If the worker stopped meanwhile, the isolate is disposed of here.
                let _ = order.reply.send(made);
            }
        })?;
    Ok(SpareOrders(orders))
}

/// Puts the calling thread in Linux's SCHED_IDLE class: it runs only on CPU time no
/// other thread wants, so making spares never delays a worker's requests. Elsewhere (or
/// if refused) the thread keeps the normal class.
fn run_when_idle() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        #[expect(
            unsafe_code,
            reason = "libc call to change this thread's scheduling class"
        )]
        // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if rc != 0 {
            tracing::debug!(target: "outpost::engine", "spare-isolate thread keeps its scheduling class: {}", std::io::Error::last_os_error());
        }
    }
}
