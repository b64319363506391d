//! A worker thread of the engine: a current-thread tokio runtime owning this thread's isolates, one per function it has served.
//!
//! Every worker holds every deployed function (its spec); it boots an isolate for a
//! function when it first serves it (or at deploy, when the function preloads). Requests
//! that arrive on a worker thread run on that thread's isolate directly; commands (deploy,
//! remove, stats, requests from other threads) arrive over a channel.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::poll_fn;
use std::pin::Pin;
use std::rc::Rc;
use std::rc::Weak;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::time::Sleep;

use crate::bundle::FunctionSpec;
use crate::exchange::EngineRequest;
use crate::exchange::FunctionFailure;
use crate::ext::Responder;
use crate::ext::cache::ResponseCache;
use crate::isolate::BootError;
use crate::isolate::FunctionIsolate;
use crate::isolate::Retirement;
use crate::isolate::SpareIsolate;
use crate::spare;
use crate::spare::SpareOrders;
use crate::watchdog::SliceClock;

/// Work sent to a shard.
pub(crate) enum Command {
    /// First phase of a deploy: take the spec and, if `boot`, boot it (validating the
    /// bundle); nothing serves it until the matching [`Command::Commit`].
    Prepare {
        ticket: u64,
        spec: Arc<FunctionSpec>,
        boot: bool,
        reply: oneshot::Sender<Result<(), BootError>>,
    },
    /// Second phase: make the prepared version the one that serves.
    Commit {
        ticket: u64,
        reply: oneshot::Sender<()>,
    },
    /// A deploy failed on some shard: forget what was prepared.
    Abort { ticket: u64 },
    /// Stop serving a function once its requests in flight are done.
    Remove { name: String },
    /// Run one request (sent by a thread that is not this worker).
    Dispatch {
        function: Arc<str>,
        request: EngineRequest,
        responder: Responder,
    },
    /// Report what the shard holds.
    Stats { reply: oneshot::Sender<ShardStats> },
}

/// What one shard holds right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Functions deployed to this shard.
    pub functions: usize,
    /// Booted isolates.
    pub isolates: usize,
    /// Physical V8 heap of those isolates, in bytes.
    pub heap_bytes: usize,
    /// Requests in flight (response not finished or `waitUntil` work pending).
    pub in_flight: usize,
    /// Blank isolates ready for a function's first request (0 or 1).
    pub spare_isolates: usize,
    /// Cold starts that took the spare isolate, since the worker started.
    pub spare_boots: u64,
}

type SharedIsolate = Rc<RefCell<FunctionIsolate>>;

struct Slot {
    spec: Arc<FunctionSpec>,
    isolate: Option<SharedIsolate>,
}

/// How long a spare order may take before cold starts stop waiting for it and boot
/// isolates of their own. Making one takes ~4 ms of CPU; this bounds the wait when the
/// factory (at low priority) gets little CPU because the worker's core is saturated.
const SPARE_LATE_AFTER: Duration = Duration::from_millis(20);

/// A request to a function with no isolate here, waiting for the spare being made.
struct Parked {
    function: Arc<str>,
    request: EngineRequest,
    responder: Responder,
}

/// A deploy between its two phases.
struct Prepared {
    spec: Arc<FunctionSpec>,
    isolate: Option<FunctionIsolate>,
}

/// The isolates and function specs of one worker thread.
pub(crate) struct Shard {
    functions: HashMap<Arc<str>, Slot>,
    prepared: HashMap<u64, Prepared>,
    /// Versions replaced or removed whose requests are still finishing.
    draining: Vec<Weak<RefCell<FunctionIsolate>>>,
    clock: Arc<SliceClock>,
    memory_budget: usize,
    /// The node's Cache API store, shared by all workers; `None` when switched off.
    cache: Option<Arc<dyn ResponseCache>>,
    /// Where spare isolates come from; `None` when spares are off.
    spare_orders: Option<SpareOrders>,
    spare: Option<SpareIsolate>,
    spare_boots: u64,
    /// Cold starts waiting for the spare on its way, in arrival order.
    parked: Vec<Parked>,
    /// A spare has been ordered and has not arrived.
    refilling: bool,
    /// The outstanding order has taken longer than [`SPARE_LATE_AFTER`]: cold starts boot
    /// here until it arrives.
    spare_late: bool,
    this: Weak<RefCell<Shard>>,
}

impl Shard {
    pub(crate) fn new(
        clock: Arc<SliceClock>,
        memory_budget: usize,
        cache: Option<Arc<dyn ResponseCache>>,
        spare_orders: Option<SpareOrders>,
    ) -> Rc<RefCell<Shard>> {
        Rc::new_cyclic(|this| {
            RefCell::new(Shard {
                functions: HashMap::new(),
                prepared: HashMap::new(),
                draining: Vec::new(),
                clock,
                memory_budget,
                cache,
                spare_orders,
                spare: None,
                spare_boots: 0,
                parked: Vec::new(),
                refilling: false,
                spare_late: false,
                this: this.clone(),
            })
        })
    }

    /// Orders a spare isolate if spares are on and none is ready or on its way. The
    /// factory thread makes it; this worker goes on serving meanwhile.
    pub(crate) fn refill_spare(&mut self) {
        let Some(orders) = self.spare_orders.clone() else {
            return;
        };
        if self.spare.is_some() || self.refilling {
            return;
        }
        self.refilling = true;
        let this = self.this.clone();
        deno_core::unsync::spawn(async move {
            let made = orders.make();
            let mut made = std::pin::pin!(made);
            let made = match tokio::time::timeout(SPARE_LATE_AFTER, &mut made).await {
                Ok(made) => made,
                Err(_) => {
                    if let Some(shard) = this.upgrade() {
                        let mut shard = shard.borrow_mut();
                        shard.spare_late = true;
                        shard.release_parked();
                    }
                    made.await
                }
            };
            let Some(shard) = this.upgrade() else {
                return;
            };
            let mut shard = shard.borrow_mut();
            shard.refilling = false;
            shard.spare_late = false;
            match made {
                Ok(spare) => shard.spare = Some(spare),
                Err(error) => {
                    tracing::warn!(target: "outpost::engine", "could not make a spare isolate: {error}");
                }
            }
            shard.release_parked();
        });
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Dispatch {
                function,
                request,
                responder,
            } => self.dispatch(&function, request, responder),
            Command::Prepare {
                ticket,
                spec,
                boot,
                reply,
            } => {
                let _ = reply.send(self.prepare(ticket, spec, boot));
            }
            Command::Commit { ticket, reply } => {
                self.commit(ticket);
                let _ = reply.send(());
            }
            Command::Abort { ticket } => {
                self.prepared.remove(&ticket);
            }
            Command::Remove { name } => {
                // Requests in flight finish; new ones find the function gone.
                if let Some(isolate) = self
                    .functions
                    .remove(name.as_str())
                    .and_then(|slot| slot.isolate)
                {
                    self.drain(isolate);
                }
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
        }
    }

    fn prepare(
        &mut self,
        ticket: u64,
        spec: Arc<FunctionSpec>,
        boot: bool,
    ) -> Result<(), BootError> {
        let isolate = if boot {
            let isolate =
                FunctionIsolate::boot(spec.clone(), &self.clock, None, self.cache.clone())?;
            // Booted only to validate the bundle: this shard boots it again when it serves it.
            spec.preload.then_some(isolate)
        } else {
            None
        };
        self.prepared.insert(ticket, Prepared { spec, isolate });
        Ok(())
    }

    fn commit(&mut self, ticket: u64) {
        let Some(Prepared { spec, isolate }) = self.prepared.remove(&ticket) else {
            return;
        };
        let isolate = isolate.map(|isolate| self.start(isolate));
        let name: Arc<str> = Arc::from(spec.name.as_str());
        // Requests already in the old version finish there; new ones go to the new one.
        if let Some(old) = self.functions.insert(name, Slot { spec, isolate })
            && let Some(old) = old.isolate
        {
            self.drain(old);
        }
    }

    /// Runs one request on this shard's isolate of `function`, booting it first if needed.
    pub(crate) fn dispatch(
        &mut self,
        function: &str,
        request: EngineRequest,
        responder: Responder,
    ) {
        let Some(slot) = self.functions.get(function) else {
            let _ = responder.send(Err(FunctionFailure::NotDeployed));
            return;
        };
        let live = slot
            .isolate
            .as_ref()
            .filter(|iso| iso.borrow().retired.is_none())
            .cloned();
        let isolate = match live {
            Some(isolate) => isolate,
            None => {
                let spec = slot.spec.clone();
                if self.should_wait_for_spare(&spec) {
                    self.park(function, request, responder);
                    return;
                }
                match self.boot(function, spec) {
                    Ok(isolate) => isolate,
                    Err(error) => {
                        tracing::error!(target: "outpost::engine", function, "isolate failed to boot: {error}");
                        let _ = responder.send(Err(FunctionFailure::BootFailed(error.to_string())));
                        return;
                    }
                }
            }
        };
        isolate
            .borrow_mut()
            .dispatch(request, responder, &self.clock);
    }

    /// Boots `function`'s isolate here (in the spare when it fits) and makes it the one
    /// that serves.
    fn boot(
        &mut self,
        function: &str,
        spec: Arc<FunctionSpec>,
    ) -> Result<SharedIsolate, BootError> {
        let spare = self.spare.take_if(|spare| spare.fits(&spec.limits));
        self.spare_boots += u64::from(spare.is_some());
        let booted = FunctionIsolate::boot(spec, &self.clock, spare, self.cache.clone());
        self.refill_spare();
        let isolate = self.start(booted?);
        if let Some(slot) = self.functions.get_mut(function) {
            slot.isolate = Some(isolate.clone());
        }
        self.enforce_budget(&isolate);
        Ok(isolate)
    }

    /// Whether a cold start of `spec` should wait for the spare on its way: it is at
    /// most one isolate creation away, no further than creating one here would be.
    fn should_wait_for_spare(&self, spec: &FunctionSpec) -> bool {
        self.spare.is_none()
            && self.refilling
            && !self.spare_late
            && spec.limits.heap_bytes() == spare::heap_bytes()
    }

    fn park(&mut self, function: &str, request: EngineRequest, responder: Responder) {
        self.parked.push(Parked {
            function: Arc::from(function),
            request,
            responder,
        });
    }

    /// Dispatches the parked cold starts again, in arrival order: the first function
    /// takes the spare if one is ready; the others park again or boot here.
    fn release_parked(&mut self) {
        for parked in std::mem::take(&mut self.parked) {
            self.dispatch(&parked.function, parked.request, parked.responder);
        }
    }

    /// Spawns the task that drives the isolate's event loop and wall-time deadlines.
    fn start(&self, isolate: FunctionIsolate) -> SharedIsolate {
        let isolate = Rc::new(RefCell::new(isolate));
        let driven = isolate.clone();
        let clock = self.clock.clone();
        deno_core::unsync::spawn(async move {
            let mut timer: Option<(Instant, Pin<Box<Sleep>>)> = None;
            poll_fn(|cx| {
                let mut iso = driven.borrow_mut();
                if iso.poll(cx, &clock).is_ready() {
                    return Poll::Ready(());
                }
                match iso.next_deadline() {
                    None => timer = None,
                    Some(deadline) => {
                        if timer.as_ref().is_none_or(|(at, _)| *at != deadline) {
                            timer = Some((
                                deadline,
                                Box::pin(tokio::time::sleep_until(deadline.into())),
                            ));
                        }
                        if let Some((_, sleep)) = timer.as_mut()
                            && sleep.as_mut().poll(cx).is_ready()
                        {
                            iso.expire(Instant::now());
                            timer = None;
                            cx.waker().wake_by_ref();
                        }
                    }
                }
                Poll::Pending
            })
            .await;
        });
        isolate
    }

    /// Lets the requests in flight on a replaced version finish, then retires it.
    fn drain(&mut self, isolate: SharedIsolate) {
        self.draining.retain(|iso| iso.strong_count() > 0);
        self.draining.push(Rc::downgrade(&isolate));
        deno_core::unsync::spawn(async move {
            while isolate.borrow().in_flight() > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            isolate.borrow_mut().retire(Retirement::Evicted);
        });
    }

    /// Evicts least-recently-used idle isolates while the shard is over its memory budget.
    fn enforce_budget(&mut self, keep: &SharedIsolate) {
        let mut live: Vec<(Arc<str>, Instant, usize)> = self
            .functions
            .iter()
            .filter_map(|(name, slot)| {
                let isolate = slot.isolate.as_ref()?;
                let mut iso = isolate.borrow_mut();
                Some((name.clone(), iso.last_used, iso.heap_bytes()))
            })
            .collect();
        let mut total: usize = live.iter().map(|(_, _, bytes)| bytes).sum();
        if total <= self.memory_budget {
            return;
        }
        live.sort_by_key(|(_, last_used, _)| *last_used);
        for (name, _, bytes) in live {
            if total <= self.memory_budget {
                break;
            }
            let Some(slot) = self.functions.get_mut(&name) else {
                continue;
            };
            let evictable = slot
                .isolate
                .as_ref()
                .is_some_and(|iso| !Rc::ptr_eq(iso, keep) && iso.borrow().in_flight() == 0);
            if evictable && let Some(isolate) = slot.isolate.take() {
                tracing::info!(target: "outpost::engine", function = &*name, heap_bytes = bytes, "evicting idle isolate");
                isolate.borrow_mut().retire(Retirement::Evicted);
                total = total.saturating_sub(bytes);
            }
        }
    }

    fn stats(&self) -> ShardStats {
        let mut stats = ShardStats {
            functions: self.functions.len(),
            spare_isolates: usize::from(self.spare.is_some()),
            spare_boots: self.spare_boots,
            ..ShardStats::default()
        };
        for isolate in self
            .functions
            .values()
            .filter_map(|slot| slot.isolate.as_ref())
        {
            let mut iso = isolate.borrow_mut();
            stats.isolates += 1;
            stats.heap_bytes += iso.heap_bytes();
            stats.in_flight += iso.in_flight();
        }
        stats.in_flight += self.parked.len();
        stats.in_flight += self
            .draining
            .iter()
            .filter_map(Weak::upgrade)
            .map(|iso| iso.borrow().in_flight())
            .sum::<usize>();
        stats
    }
}

/// Serves commands until every sender is gone.
pub(crate) async fn serve_commands(
    shard: Rc<RefCell<Shard>>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    while let Some(command) = commands.recv().await {
        shard.borrow_mut().handle(command);
    }
}
