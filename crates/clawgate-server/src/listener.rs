//! The accept loop: every TCP connection the gateway holds, HTTP or WebSocket, passes here.
//!
//! Class closed: socket and file-descriptor exhaustion by connections that never finish (or never
//! start) a request. Three rules, after mini-redis's `Listener`:
//! - a connection must send a complete request head within `gateway.http.headerTimeoutMs`, the
//!   first one and, when kept alive, the next one (hyper's header-read timer runs whenever the
//!   connection waits for a head, so it is also the idle timeout);
//! - at most [`ConnLimits::max`] connections are open at once, counted from accept until the socket
//!   is dropped (an upgraded WebSocket keeps its slot); the last eighth is kept for the host's own
//!   address (127.0.0.1, ::1), the address the local CLI connects from, so other peers — LAN
//!   clients, or local processes binding other 127.x.y.z addresses — can never take every slot;
//! - the cap stays below the process's open-file limit, leaving room for the database, logs and
//!   outbound connections. Connections over the cap are closed on accept.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use clawgate_core::settings::HttpLimits;

use crate::tls::Tls;

/// File descriptors kept free for everything that is not a client connection.
const FD_HEADROOM: usize = 64;

/// How many connections may be open, and how many of them only the host's own address may use.
#[derive(Debug)]
pub(crate) struct ConnLimits {
    max: usize,
    reserved: usize,
    open: AtomicUsize,
}

impl ConnLimits {
    /// `max` connections (never more than the open-file limit allows), an eighth reserved.
    pub(crate) fn new(max: usize, fd_limit: Option<usize>) -> Arc<Self> {
        let max = match fd_limit {
            Some(fds) => max.min(fds.saturating_sub(FD_HEADROOM).max(16)),
            None => max,
        }
        .max(2);
        Arc::new(Self { max, reserved: (max / 8).max(1), open: AtomicUsize::new(0) })
    }

    /// A slot for a peer at `ip`, or `None` when it must be turned away.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let limit = if is_host_address(ip) { self.max } else { self.max - self.reserved };
        let mut open = self.open.load(Ordering::Acquire);
        loop {
            if open >= limit {
                return None;
            }
            match self.open.compare_exchange_weak(open, open + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(Slot(self.clone())),
                Err(now) => open = now,
            }
        }
    }
}

/// The canonical loopback addresses a local client connects from by default.
fn is_host_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4 == Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST || v6.to_ipv4_mapped() == Some(Ipv4Addr::LOCALHOST),
    }
}

/// One open connection's place under the cap, released when the socket is dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<ConnLimits>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A socket that holds its [`Slot`]: an upgraded WebSocket owns this I/O, so it keeps the slot
/// for as long as it lives.
struct Counted<S> {
    io: TokioIo<S>,
    _slot: Slot,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> hyper::rt::Read for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> hyper::rt::Write for Counted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

/// The soft limit on open files of this process, from `/proc/self/limits` (Linux).
pub(crate) fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Accept connections and serve `app` on each until `shutdown` is cancelled, then wait for the
/// open HTTP exchanges to finish (upgraded WebSockets end through the same token).
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    tls: Option<Arc<Tls>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let caps = ConnLimits::new(limits.max_connections, open_file_limit());
    tracing::debug!(max = caps.max, reserved = caps.reserved, "connection limits");
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    // Every connection task holds a sender; when all are dropped, every connection is done.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, addr) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of descriptors or a transient network error: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = caps.admit(addr.ip()) else {
            tracing::debug!(ip = %addr.ip(), "connection cap reached; closing a new connection");
            drop(tcp);
            continue;
        };
        // Frames are small and latency-sensitive (a streamed reply is one frame per delta): never
        // let Nagle hold one back waiting for the peer's delayed ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = Service { app: app.clone(), addr };
        let shutdown = shutdown.clone();
        let done = done_tx.clone();
        let Some(tls) = &tls else {
            tokio::spawn(serve_one(
                builder.clone(),
                Counted { io: TokioIo::new(tcp), _slot: slot },
                service,
                shutdown,
                done,
            ));
            continue;
        };
        let acceptor = tls.acceptor();
        let builder = builder.clone();
        let handshake_timeout = limits.header_timeout;
        tokio::spawn(async move {
            // The TLS handshake is held to the same deadline as a request head: a peer that opens
            // a socket and says nothing (or speaks plain HTTP) is dropped, nothing else happens.
            let stream = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)) => match accepted {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(ip = %addr.ip(), error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(ip = %addr.ip(), "TLS handshake timed out");
                        return;
                    }
                },
            };
            serve_one(builder, Counted { io: TokioIo::new(stream), _slot: slot }, service, shutdown, done).await;
        });
    }
    drop(done_tx);
    let _ = done_rx.recv().await;
    Ok(())
}

/// Serve HTTP/1 (with upgrades) on one connection until it ends or the gateway stops.
async fn serve_one<S>(
    builder: hyper::server::conn::http1::Builder,
    io: Counted<S>,
    service: Service,
    shutdown: CancellationToken,
    _done: mpsc::Sender<()>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = builder.serve_connection(io, service).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The router with the peer address attached, as axum's `ConnectInfo` extractor expects it.
#[derive(Clone)]
struct Service {
    app: Router,
    addr: SocketAddr,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Service {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = <Router as tower_service::Service<hyper::Request<Incoming>>>::Future;

    fn call(&self, mut req: hyper::Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(ConnectInfo(self.addr));
        tower_service::Service::call(&mut self.app.clone(), req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_address_keeps_a_reserved_share() {
        let caps = ConnLimits::new(16, None);
        let stranger: IpAddr = "127.0.0.2".parse().unwrap();
        let host: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<Slot> = (0..14).map(|_| caps.admit(stranger).expect("within the shared part")).collect();
        assert!(caps.admit(stranger).is_none(), "strangers cannot take the reserved share");
        let cli = [caps.admit(host).expect("reserved"), caps.admit(host).expect("reserved")];
        assert!(caps.admit(host).is_none(), "the cap holds for everyone");
        drop(held);
        drop(cli);
        assert_eq!(caps.open.load(Ordering::Acquire), 0, "slots are released with their sockets");
    }

    #[test]
    fn the_cap_stays_below_the_open_file_limit() {
        assert_eq!(ConnLimits::new(512, Some(200)).max, 136);
        assert_eq!(ConnLimits::new(100, Some(100_000)).max, 100);
        assert!(is_host_address("::1".parse().unwrap()) && !is_host_address("10.0.0.1".parse().unwrap()));
    }
}
