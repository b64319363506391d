//! A worker thread of the engine: a single-threaded tokio runtime owning the isolates of the functions sharded to it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::poll_fn;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::time::Sleep;

use crate::bundle::FunctionSpec;
use crate::exchange::EngineRequest;
use crate::exchange::FunctionFailure;
use crate::ext::Responder;
use crate::isolate::BootError;
use crate::isolate::FunctionIsolate;
use crate::isolate::Retirement;
use crate::watchdog::SliceClock;

/// Work sent to a shard.
pub(crate) enum Command {
    /// Validate (boot) a function version and make it the one that serves.
    Deploy {
        spec: Arc<FunctionSpec>,
        reply: oneshot::Sender<Result<(), BootError>>,
    },
    /// Stop serving a function once its requests in flight are done.
    Remove { name: String },
    /// Run one request.
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
}

type SharedIsolate = Rc<RefCell<FunctionIsolate>>;

struct Slot {
    spec: Arc<FunctionSpec>,
    isolate: Option<SharedIsolate>,
}

pub(crate) struct Shard {
    functions: HashMap<Arc<str>, Slot>,
    clock: Arc<SliceClock>,
    memory_budget: usize,
}

impl Shard {
    pub(crate) fn new(clock: Arc<SliceClock>, memory_budget: usize) -> Shard {
        Shard {
            functions: HashMap::new(),
            clock,
            memory_budget,
        }
    }

    /// Serves commands until every sender is gone.
    pub(crate) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        while let Some(command) = commands.recv().await {
            match command {
                Command::Dispatch {
                    function,
                    request,
                    responder,
                } => self.dispatch(&function, request, responder),
                Command::Deploy { spec, reply } => {
                    let _ = reply.send(self.deploy(spec));
                }
                Command::Remove { name } => {
                    // Requests in flight finish; new ones find the function gone.
                    if let Some(isolate) = self
                        .functions
                        .remove(name.as_str())
                        .and_then(|slot| slot.isolate)
                    {
                        drain_then_retire(isolate);
                    }
                }
                Command::Stats { reply } => {
                    let _ = reply.send(self.stats());
                }
            }
        }
    }

    fn deploy(&mut self, spec: Arc<FunctionSpec>) -> Result<(), BootError> {
        let isolate = FunctionIsolate::boot(spec.clone(), &self.clock)?;
        let isolate = if spec.preload {
            Some(self.start(isolate))
        } else {
            drop(isolate);
            None
        };
        let name: Arc<str> = Arc::from(spec.name.as_str());
        if let Some(old) = self.functions.insert(name, Slot { spec, isolate }) {
            // Requests already in the old version finish there; new ones go to the new one.
            if let Some(old) = old.isolate {
                drain_then_retire(old);
            }
        }
        Ok(())
    }

    fn dispatch(&mut self, function: &str, request: EngineRequest, responder: Responder) {
        let Some(slot) = self.functions.get_mut(function) else {
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
            None => match FunctionIsolate::boot(slot.spec.clone(), &self.clock) {
                Ok(isolate) => {
                    let isolate = self.start(isolate);
                    if let Some(slot) = self.functions.get_mut(function) {
                        slot.isolate = Some(isolate.clone());
                    }
                    self.enforce_budget(&isolate);
                    isolate
                }
                Err(error) => {
                    tracing::error!(target: "outpost::engine", function, "isolate failed to boot: {error}");
                    let _ = responder.send(Err(FunctionFailure::BootFailed(error.to_string())));
                    return;
                }
            },
        };
        isolate
            .borrow_mut()
            .dispatch(request, responder, &self.clock);
    }

    /// Spawns the task that drives the isolate's event loop and wall-time deadlines.
    fn start(&self, isolate: FunctionIsolate) -> SharedIsolate {
        let isolate = Rc::new(RefCell::new(isolate));
        let driven = isolate.clone();
        let clock = self.clock.clone();
        tokio::task::spawn_local(async move {
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
            if evictable {
                tracing::info!(target: "outpost::engine", function = &*name, heap_bytes = bytes, "evicting idle isolate");
                retire_quietly(slot.isolate.take());
                total = total.saturating_sub(bytes);
            }
        }
    }

    fn stats(&self) -> ShardStats {
        let mut stats = ShardStats {
            functions: self.functions.len(),
            ..ShardStats::default()
        };
        for isolate in self
            .functions
            .values()
            .filter_map(|slot| slot.isolate.as_ref())
        {
            stats.isolates += 1;
            stats.heap_bytes += isolate.borrow_mut().heap_bytes();
        }
        stats
    }
}

fn retire_quietly(isolate: Option<SharedIsolate>) {
    if let Some(isolate) = isolate {
        isolate.borrow_mut().retire(Retirement::Evicted);
    }
}

/// Lets the requests in flight on a replaced version finish, then retires it.
fn drain_then_retire(isolate: SharedIsolate) {
    tokio::task::spawn_local(async move {
        loop {
            if isolate.borrow().in_flight() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        isolate.borrow_mut().retire(Retirement::Evicted);
    });
}
