//! The HTTP server for the viewer page (the `campeer-page` crate: its files, built into the
//! binary), WHEP, the metrics, snapshots, recordings and the page's way to the embedded
//! broker.

use super::body::SiteBody;
use super::ice::PageIceServer;
use super::metrics::{self, MetricsEndpoint};
use super::recordings::{self, RecordingsEndpoint};
use super::response::{accept_entries, plain};
use super::snapshot::{self, SnapshotEndpoint};
use super::whep;
use super::whep_server::WhepEndpoints;
use super::ws_proxy;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, VARY,
};
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

/// The endpoints the server routes to besides the page.
pub struct Endpoints {
    /// Every device's WHEP endpoint, under [`whep::PATH_PREFIX`].
    pub whep: WhepEndpoints,
    /// Prometheus' figures, on [`metrics::PATH`].
    pub metrics: MetricsEndpoint,
    /// Every camera's snapshots, under [`snapshot::PATH_PREFIX`].
    pub snapshots: SnapshotEndpoint,
    /// Every camera's recordings, under [`recordings::PATH_PREFIX`].
    pub recordings: RecordingsEndpoint,
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
    /// Prometheus' figures, on [`metrics::PATH`].
    metrics: MetricsEndpoint,
    /// Every camera's snapshots, under [`snapshot::PATH_PREFIX`].
    snapshots: SnapshotEndpoint,
    /// Every camera's recordings, under [`recordings::PATH_PREFIX`].
    recordings: RecordingsEndpoint,
}

impl HttpServer {
    /// Serves on `listener`, bound by the caller. `mqtt_backend`: the embedded broker's
    /// WebSocket listener, offered to pages on [`ws_proxy::MQTT_PATH`]; `endpoints`: WHEP,
    /// the metrics, snapshots and recordings.
    pub fn start(
        listener: TcpListener,
        page: PageConfig,
        mqtt_backend: Option<SocketAddr>,
        endpoints: Endpoints,
    ) -> std::io::Result<Self> {
        let Endpoints {
            whep,
            metrics,
            snapshots,
            recordings,
        } = endpoints;
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
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
             media-src 'self' blob:; worker-src blob:; connect-src 'self'{broker_origin}; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
        );
        let site = Site {
            config_json: Bytes::from(serde_json::to_vec(&page).unwrap_or_default()),
            csp: HeaderValue::from_str(&csp)
                .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'")),
            mqtt_backend,
            whep,
            metrics,
            snapshots,
            recordings,
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

async fn route(request: Request<Incoming>, site: &Site) -> Response<SiteBody> {
    let path = request.uri().path();
    let small = |response: Response<Full<Bytes>>| response.map(SiteBody::from);
    let mut response = match site.mqtt_backend {
        Some(backend) if path == ws_proxy::MQTT_PATH => {
            small(ws_proxy::upgrade(request, backend).await)
        }
        _ if path.starts_with(whep::PATH_PREFIX) => small(site.whep.handle(request).await),
        _ if path == metrics::PATH => small(site.metrics.handle(&request)),
        _ if path.starts_with(snapshot::PATH_PREFIX) => {
            small(site.snapshots.handle(&request).await)
        }
        _ if path.starts_with(recordings::PATH_PREFIX) => site.recordings.handle(&request).await,
        _ => small(respond(&request, &site.config_json)),
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
    let mut encoding = None;
    let (content_type, body) = if path == "/config.json" {
        ("application/json", config_json.clone())
    } else if let Some(asset) = campeer_page::ASSETS
        .iter()
        .find(|asset| asset.path == path || (path == "/index.html" && asset.path == "/"))
    {
        let accept_encoding = request
            .headers()
            .get(ACCEPT_ENCODING)
            .and_then(|value| value.to_str().ok());
        if accepts_gzip(accept_encoding) {
            encoding = Some("gzip");
            (asset.content_type, Bytes::from_static(asset.gzip))
        } else {
            match asset.plain() {
                Ok(body) => (asset.content_type, Bytes::from(body)),
                Err(e) => {
                    tracing::error!("the page's {} does not decompress: {e}", asset.path);
                    return plain(StatusCode::INTERNAL_SERVER_ERROR, "asset unreadable\n");
                }
            }
        }
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
    if let Some(encoding) = encoding {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    if path != "/config.json" {
        headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    }
    // The page is small and changes with the binary: always revalidate.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Whether an `Accept-Encoding` value takes gzip: an entry for `gzip` (or `x-gzip`) decides,
/// else one for `*`, and a weight of 0 refuses. Without the header the plain file goes out
/// (HTTP would allow gzip, but curl and scripts that send none expect the file itself).
fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let mut wildcard = false;
    for (coding, refused) in accept_entries(accept_encoding) {
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            return !refused;
        }
        if coding == "*" {
            wildcard = !refused;
        }
    }
    wildcard
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

    #[test]
    fn gzip_goes_to_clients_that_take_it() {
        for taken in [
            "gzip",
            "gzip, deflate, br, zstd",
            "br;q=1.0, GZIP;q=0.5",
            "x-gzip",
            "identity, *",
            "gzip ; q=0.001",
        ] {
            assert!(accepts_gzip(Some(taken)), "{taken:?} takes gzip");
        }
        for refused in [
            "",
            "identity",
            "br, deflate",
            "gzip;q=0",
            "gzip; q=0.0, *",
            "*;q=0",
            "gzipped",
        ] {
            assert!(
                !accepts_gzip(Some(refused)),
                "{refused:?} does not take gzip"
            );
        }
        assert!(!accepts_gzip(None), "no header: the plain file");
    }

    #[test]
    fn every_file_served_is_its_source() {
        let assets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("page/assets");
        for asset in campeer_page::ASSETS {
            let source = std::fs::read(assets.join(asset.file)).expect(asset.file);
            assert_eq!(asset.plain().expect(asset.path), source, "{}", asset.path);
            assert!(
                asset.gzip.len() < source.len(),
                "{} got smaller",
                asset.path
            );
        }
        // Every file of the page is served (the vendored files' README is for maintainers).
        let mut files = Vec::new();
        for dir in [assets.clone(), assets.join("vendor")] {
            for entry in std::fs::read_dir(&dir).expect("the page's files") {
                let path = entry.expect("a directory entry").path();
                if path.is_file() {
                    let relative = path.strip_prefix(&assets).expect("under assets/");
                    files.push(relative.to_string_lossy().into_owned());
                }
            }
        }
        files.retain(|file| file != "vendor/README.md");
        files.sort();
        let mut served: Vec<String> = campeer_page::ASSETS
            .iter()
            .map(|asset| asset.file.to_owned())
            .collect();
        served.sort();
        assert_eq!(served, files);
    }

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
