//! The node's HTTP front: a pingora proxy service on every engine worker, each accepting on its own `SO_REUSEPORT` socket, and graceful shutdown.
//!
//! A connection is accepted, parsed, routed and answered on one worker thread, and a
//! function it calls runs on that worker's isolate: no request crosses threads.

use std::net::SocketAddr;
use std::os::fd::IntoRawFd;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use outpost_engine::Engine;
use pingora::server::Fds;
use pingora::server::ShutdownWatch;
use pingora::server::configuration::ServerConf;
use pingora::services::ServiceReadyNotifier;
use pingora::services::ServiceWithDependents;
use tokio::sync::watch;

use crate::proxy::EdgeProxy;

/// Connections the kernel queues per socket before the node accepts them.
const BACKLOG: i32 = 65_535;

/// Why the node could not start listening.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct ListenError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Listening sockets, one per worker, all bound to the same address.
pub struct Listeners {
    addr: SocketAddr,
    sockets: Vec<std::net::TcpListener>,
}

impl Listeners {
    /// Binds `count` sockets to `addr` with `SO_REUSEPORT`, so the kernel spreads new
    /// connections over the workers. Fails, naming the address, if another process is
    /// listening there already. Port 0 picks one free port for all of them.
    pub fn bind(addr: SocketAddr, count: usize) -> Result<Listeners, ListenError> {
        let failed = |source| ListenError { addr, source };
        // A plain bind first: SO_REUSEPORT would quietly share a port someone else holds.
        let probe = socket(addr, false).map_err(failed)?;
        let addr = probe.local_addr().map_err(failed)?;
        drop(probe);
        let sockets = (0..count.max(1))
            .map(|_| socket(addr, true))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| ListenError { addr, source })?;
        Ok(Listeners { addr, sockets })
    }

    /// The bound address (with the port chosen, if 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    // The workers' event loops accept without blocking.
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The running HTTP front; [`Front::shutdown`] stops it gracefully.
pub struct Front {
    shutdown: watch::Sender<bool>,
    /// Requests in flight on each worker.
    in_flight: Vec<Arc<AtomicUsize>>,
}

impl Front {
    /// Starts one pingora proxy service per engine worker, each on one of `listeners`,
    /// each with its own copy of `proxy`.
    pub fn start(engine: &Engine, listeners: Listeners, proxy: &EdgeProxy) -> Front {
        let (shutdown, watch): (watch::Sender<bool>, ShutdownWatch) = watch::channel(false);
        let conf = Arc::new(ServerConf::default());
        let key = listeners.addr.to_string();
        let mut in_flight = Vec::new();
        for (index, (runtime, socket)) in engine.runtimes().zip(listeners.sockets).enumerate() {
            let proxy = proxy.for_worker(index);
            in_flight.push(proxy.in_flight());
            let mut service = pingora::proxy::http_proxy_service(&conf, proxy);
            service.add_tcp(&key);
            // pingora takes the socket from this table instead of binding its own.
            let mut fds = Fds::new();
            fds.add(key.clone(), socket.into_raw_fd());
            let fds = Arc::new(parking_lot::Mutex::new(fds));
            let watch = watch.clone();
            runtime.spawn(async move {
                let (ready, _) = watch::channel(false);
                service
                    .start_service(Some(fds), watch, 1, ServiceReadyNotifier::new(ready))
                    .await;
            });
        }
        Front {
            shutdown,
            in_flight,
        }
    }

    /// Stops accepting connections and closes idle ones, then waits until the requests in
    /// flight are answered (function and origin alike) and every `ctx.waitUntil` promise
    /// has settled, for at most `grace`.
    pub async fn shutdown(self, engine: &Engine, grace: Duration) {
        let _ = self.shutdown.send(true);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            let answering: usize = self
                .in_flight
                .iter()
                .map(|count| count.load(Ordering::Acquire))
                .sum();
            let running: usize = engine.stats().await.iter().map(|s| s.in_flight).sum();
            if answering + running == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(target: "outpost::node", "shutdown grace period over; dropping work still in flight");
    }
}
