//! The HTTP server for the viewer page. Everything it serves is built into the binary, so the
//! device needs no internet and no CDN.

use super::ice::PageIceServer;
use super::response::plain;
use super::whep;
use super::whep_server::WhepEndpoints;
use super::ws_proxy;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

/// A client gets this long to send its request headers (slowloris protection).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that takes nothing of what is written to it for this long is dropped, so a
/// reader that never reads cannot hold a connection slot (and a broker connection) forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);
/// Connections served at once (a watching page holds one for its MQTT WebSocket); more wait
/// in the kernel's backlog.
const MAX_CONNECTIONS: usize = 128;

/// (path, content type, body)
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("assets/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/style.css"),
    ),
    (
        "/vendor/mqtt.esm.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/vendor/mqtt.esm.js"),
    ),
    (
        "/vendor/mqtt.LICENSE.md",
        "text/plain; charset=utf-8",
        include_bytes!("assets/vendor/mqtt.LICENSE.md"),
    ),
];

/// What the page needs to know about this deployment, served as /config.json.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageConfig {
    /// The topic prefix.
    pub prefix: String,
    /// The device this campeer serves, preselected in the page.
    pub device: String,
    /// The broker's WebSocket URL, when the operator configured one.
    pub broker_url: Option<String>,
    /// With the embedded broker: the path of its WebSocket on the page's own origin.
    pub broker_ws_path: Option<String>,
    /// The browser's STUN and TURN servers (`web.ice_servers`), as `RTCIceServer`s.
    pub ice_servers: Vec<PageIceServer>,
}

pub struct HttpServer {
    pub local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

/// What every response shares: the page's configuration and its security headers.
struct Site {
    config_json: Bytes,
    /// Content-Security-Policy: the page's own files only; scripts talk to this origin and,
    /// with an external broker, to that broker.
    csp: HeaderValue,
    /// The embedded broker's WebSocket listener, reached through [`ws_proxy::MQTT_PATH`].
    mqtt_backend: Option<SocketAddr>,
    /// Every device's WHEP endpoint, under [`whep::PATH_PREFIX`].
    whep: WhepEndpoints,
}

impl HttpServer {
    /// `mqtt_backend`: the embedded broker's WebSocket listener, offered to pages on
    /// [`ws_proxy::MQTT_PATH`]; `whep`: the devices' WHEP endpoints.
    pub async fn start(
        listen: SocketAddr,
        page: PageConfig,
        mqtt_backend: Option<SocketAddr>,
        whep: WhepEndpoints,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let broker_origin = page
            .broker_url
            .as_deref()
            .map(|url| format!(" {}", url.split_whitespace().next().unwrap_or("")))
            .unwrap_or_default();
        // worker-src blob: lets mqtt.js run its keep-alive timers in a worker of its own,
        // which browsers do not throttle in a background tab (Firefox reports the page's
        // error when the worker is refused).
        let csp = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             media-src 'self' blob:; worker-src blob:; connect-src 'self'{broker_origin}; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
        );
        let site = Site {
            config_json: Bytes::from(serde_json::to_vec(&page).unwrap_or_default()),
            csp: HeaderValue::from_str(&csp)
                .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'")),
            mqtt_backend,
            whep,
        };
        let task = tokio::spawn(serve(listener, Arc::new(site)));
        tracing::info!("viewer page on http://{local_addr}/");
        Ok(Self { local_addr, task })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, site: Arc<Site>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: back off instead of spinning.
                tracing::warn!("HTTP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The page's signaling rides this connection (the WebSocket to the broker): small
        // messages a viewer waits on, which Nagle's algorithm would hold for a delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY on a page connection: {e}");
        }
        let site = Arc::clone(&site);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let site = Arc::clone(&site);
                async move { Ok::<_, Infallible>(route(request, &site).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(
                    TokioIo::new(WriteTimeout::new(stream, WRITE_TIMEOUT)),
                    service,
                )
                .with_upgrades();
            if let Err(e) = connection.await {
                tracing::debug!("HTTP connection ended: {e}");
            }
            drop(permit);
        });
    }
}

async fn route(request: Request<Incoming>, site: &Site) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let mut response = match site.mqtt_backend {
        Some(backend) if path == ws_proxy::MQTT_PATH => ws_proxy::upgrade(request, backend).await,
        _ if path.starts_with(whep::PATH_PREFIX) => site.whep.handle(request).await,
        _ => respond(&request, &site.config_json),
    };
    let headers = response.headers_mut();
    headers.insert("content-security-policy", site.csp.clone());
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

fn respond(request: &Request<Incoming>, config_json: &Bytes) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    let path = request.uri().path();
    let (content_type, body) = if path == "/config.json" {
        ("application/json", config_json.clone())
    } else if let Some((_, content_type, body)) = ASSETS
        .iter()
        .find(|(asset, _, _)| *asset == path || (path == "/index.html" && *asset == "/"))
    {
        (*content_type, Bytes::from_static(body))
    } else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    let body = if request.method() == Method::HEAD {
        Bytes::new()
    } else {
        body
    };
    let mut response = Response::new(Full::new(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The page is small and changes with the binary: always revalidate.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A connection whose writes fail once the peer has taken nothing for `limit`.
struct WriteTimeout<T> {
    inner: T,
    limit: Duration,
    /// Set while a write waits.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteTimeout<T> {
    fn new(inner: T, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Turns a pending write into a timeout error once it has waited too long.
    fn check_stall<X>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<std::io::Result<X>>,
    ) -> Poll<std::io::Result<X>> {
        if result.is_ready() {
            self.stalled = None;
            return result;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if stalled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client took nothing for too long",
            )));
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check_stall(cx, result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.check_stall(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_client_that_reads_nothing_is_dropped() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        // Nobody reads `theirs`.
        let mut connection = WriteTimeout::new(ours, Duration::from_millis(200));
        let result =
            tokio::time::timeout(Duration::from_secs(10), connection.write_all(&[0u8; 4096]))
                .await
                .expect("the write gave up by itself");
        let error = result.expect_err("a write to nobody finished");
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);

        // A reader that keeps reading is served.
        let (ours, mut reader) = tokio::io::duplex(64);
        let mut connection = WriteTimeout::new(ours, Duration::from_millis(200));
        let drain = tokio::spawn(async move {
            let mut sink = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut sink)
                .await
                .map(|_| sink.len())
        });
        connection.write_all(&[1u8; 4096]).await.expect("written");
        connection.shutdown().await.expect("closed");
        drop(connection);
        assert_eq!(drain.await.unwrap().unwrap(), 4096);
        drop(theirs.shutdown().await);
    }
}
