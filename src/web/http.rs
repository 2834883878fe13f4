//! The HTTP server for the viewer page. Everything it serves is built into the binary, so the
//! device needs no internet and no CDN.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// A client gets this long to send its request headers (slowloris protection).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 64;

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
    /// With the embedded broker: its WebSocket port, on the host the page was loaded from.
    pub broker_ws_port: Option<u16>,
    /// The browser's STUN and TURN servers (`web.ice_servers`), as `RTCIceServer`s.
    pub ice_servers: Vec<PageIceServer>,
}

/// One entry of the page's `RTCPeerConnection` `iceServers`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PageIceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl From<&crate::config::IceServer> for PageIceServer {
    fn from(server: &crate::config::IceServer) -> Self {
        Self {
            urls: server.urls.clone(),
            username: server.username.clone(),
            credential: server.credential.as_ref().map(|c| c.0.clone()),
        }
    }
}

pub struct HttpServer {
    pub local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    pub async fn start(listen: SocketAddr, page: PageConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let config_json = Bytes::from(serde_json::to_vec(&page).unwrap_or_default());
        let task = tokio::spawn(serve(listener, Arc::new(config_json)));
        tracing::info!("viewer page on http://{local_addr}/");
        Ok(Self { local_addr, task })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, config_json: Arc<Bytes>) {
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
        let config_json = Arc::clone(&config_json);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let config_json = Arc::clone(&config_json);
                async move { Ok::<_, Infallible>(respond(&request, &config_json)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!("HTTP connection ended: {e}");
            }
            drop(permit);
        });
    }
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

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
