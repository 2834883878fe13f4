//! A WHEP player on webrtc-rs, to test campeer's WHEP endpoint from another stack than
//! aiortc's: it posts a complete offer, plays what comes back with the test viewer's
//! decoders, and restarts ICE with a PATCH as RFC 9725 §4.3.2 says (new credentials and
//! candidates up, campeer's new ones back in a `200`). HTTP/1.1 is spoken by hand over one
//! connection per request, so that every status and header is seen as sent.

use crate::viewer::{
    ViewerEvent, ViewerOptions, ViewerState, Watching, apply_restart_offer, build_viewer_peer,
    recvonly_offer,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use webrtc::peer_connection::{PeerConnection, RTCSessionDescription};

/// An HTTP response as received.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body as text (lossy: see `bytes` for a JPEG).
    pub body: String,
    pub bytes: Vec<u8>,
}

impl HttpReply {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request to the loopback server on `port`, answered within 15 s.
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpReply {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to campeer's HTTP server");
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send the request");
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .expect("read the response");
        response
    };
    let response = tokio::time::timeout(Duration::from_secs(15), exchange)
        .await
        .expect("campeer answers within 15 s");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response");
    let head = std::str::from_utf8(&response[..split]).expect("a UTF-8 head");
    let bytes = response[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    HttpReply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
    }
}

/// A WHEP session played by webrtc-rs.
pub struct WhepPlayer {
    port: u16,
    /// The session's resource (the `Location` campeer gave).
    pub location: String,
    /// The session's ETag as last given.
    pub etag: String,
    pub state: Arc<Mutex<ViewerState>>,
    peer: Arc<dyn PeerConnection>,
    events: mpsc::UnboundedReceiver<ViewerEvent>,
    /// campeer's answer, as last amended by a restart.
    answer: String,
    /// How long gathering took before the offer could be posted (WHEP sends one complete
    /// offer; `offer_sent_at` in the state is when the POST went out).
    pub gathering: Duration,
}

impl WhepPlayer {
    /// Posts a complete offer (every candidate gathered) to `/whep/<device>`; the refusal
    /// when campeer does not answer `201`.
    pub async fn play(port: u16, device: &str) -> Result<Self, HttpReply> {
        let state = Arc::new(Mutex::new(ViewerState::default()));
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let options = ViewerOptions::default();
        let peer = build_viewer_peer(
            &options,
            events_tx,
            Arc::clone(&state),
            Arc::new(Mutex::new(None)),
        )
        .await;
        let offer = recvonly_offer(&peer, false).await;
        let gathering_from = Instant::now();
        peer.set_local_description(offer)
            .await
            .expect("apply the offer");
        let offer = gathered_description(&peer, &mut events).await;
        let gathering = gathering_from.elapsed();
        state.lock().unwrap().offer_sent_at = Some(Instant::now());
        let reply = http(
            port,
            "POST",
            &format!("/whep/{device}"),
            &[("Content-Type", "application/sdp")],
            &offer,
        )
        .await;
        if reply.status != 201 {
            let _ = peer.close().await;
            return Err(reply);
        }
        state.lock().unwrap().answered_at = Some(Instant::now());
        let answer = reply.body.clone();
        peer.set_remote_description(
            RTCSessionDescription::answer(answer.clone()).expect("an answer"),
        )
        .await
        .expect("apply campeer's answer");
        Ok(Self {
            port,
            location: reply.header("location").expect("a Location").to_owned(),
            etag: reply.header("etag").expect("an ETag").to_owned(),
            state,
            peer,
            events,
            answer,
            gathering,
        })
    }

    /// Restarts ICE: a restart offer applied here, its new credentials and candidates sent as
    /// a PATCH with `If-Match: *`; on `200`, campeer's new credentials and candidates from the
    /// reply replace the old ones in its answer, which is applied again, and the new ETag is
    /// kept.
    pub async fn restart_ice(&mut self) -> HttpReply {
        apply_restart_offer(&self.peer).await;
        let local = gathered_description(&self.peer, &mut self.events).await;
        let reply = self.patch("*", &restart_fragment_of(&local)).await;
        if reply.status == 200 {
            self.answer = amended_answer(&self.answer, &reply.body);
            self.peer
                .set_remote_description(
                    RTCSessionDescription::answer(self.answer.clone()).expect("an answer"),
                )
                .await
                .expect("apply campeer's restarted answer");
            if let Some(etag) = reply.header("etag") {
                self.etag = etag.to_owned();
            }
        }
        reply
    }

    /// A PATCH of `fragment` with `If-Match: if_match`.
    pub async fn patch(&self, if_match: &str, fragment: &str) -> HttpReply {
        http(
            self.port,
            "PATCH",
            &self.location,
            &[
                ("Content-Type", "application/trickle-ice-sdpfrag"),
                ("If-Match", if_match),
            ],
            fragment,
        )
        .await
    }

    pub async fn delete(&self) -> HttpReply {
        http(self.port, "DELETE", &self.location, &[], "").await
    }

    /// The ICE username fragment campeer's answer (as last amended) names.
    pub fn remote_ufrag(&self) -> Option<String> {
        attribute(&self.answer, "ice-ufrag")
    }

    /// The ICE username fragment of this player's current offer.
    pub async fn local_ufrag(&self) -> String {
        let local = self
            .peer
            .local_description()
            .await
            .expect("a local description");
        attribute(&local.sdp, "ice-ufrag").expect("a ufrag")
    }

    pub async fn close(self) {
        let _ = self.peer.close().await;
    }
}

impl Watching for WhepPlayer {
    fn seen(&self) -> &Mutex<ViewerState> {
        &self.state
    }
}

/// The local description once gathering completed (or after 5 s, with what there is).
async fn gathered_description(
    peer: &Arc<dyn PeerConnection>,
    events: &mut mpsc::UnboundedReceiver<ViewerEvent>,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if matches!(event, ViewerEvent::Candidate(None)) {
            break;
        }
    }
    peer.local_description()
        .await
        .expect("a local description")
        .sdp
}

fn attribute(sdp: &str, name: &str) -> Option<String> {
    let prefix = format!("a={name}:");
    sdp.lines()
        .find_map(|line| line.trim_end().strip_prefix(&prefix))
        .map(str::to_owned)
}

/// The trickle-ice-sdpfrag of a restart: the offer's new credentials, its first section's
/// `m=` line and mid, and its candidates.
fn restart_fragment_of(offer: &str) -> String {
    let mut fragment = format!(
        "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\n",
        attribute(offer, "ice-ufrag").expect("the restart offer's ufrag"),
        attribute(offer, "ice-pwd").expect("the restart offer's pwd")
    );
    if let Some(media) = offer.lines().find(|line| line.starts_with("m=")) {
        fragment.push_str(&format!("{}\r\n", media.trim_end()));
    }
    if let Some(mid) = attribute(offer, "mid") {
        fragment.push_str(&format!("a=mid:{mid}\r\n"));
    }
    for line in offer.lines().map(str::trim_end) {
        if line.starts_with("a=candidate:") {
            fragment.push_str(&format!("{line}\r\n"));
        }
    }
    fragment
}

/// campeer's answer with the restart's credentials and candidates in place of the old ones:
/// the candidates go into the first section, which carries the bundled transport.
fn amended_answer(answer: &str, fragment: &str) -> String {
    let ufrag = attribute(fragment, "ice-ufrag").expect("the restart's ufrag");
    let pwd = attribute(fragment, "ice-pwd").expect("the restart's pwd");
    let candidates: Vec<&str> = fragment
        .lines()
        .map(str::trim_end)
        .filter(|line| line.starts_with("a=candidate:"))
        .collect();
    let mut out = String::new();
    let mut placed = false;
    for line in answer.lines().map(str::trim_end) {
        if line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
            continue;
        }
        if line.starts_with("a=ice-ufrag:") {
            out.push_str(&format!("a=ice-ufrag:{ufrag}\r\n"));
        } else if line.starts_with("a=ice-pwd:") {
            out.push_str(&format!("a=ice-pwd:{pwd}\r\n"));
        } else {
            out.push_str(line);
            out.push_str("\r\n");
        }
        if !placed && line.starts_with("a=mid:") {
            placed = true;
            for candidate in &candidates {
                out.push_str(candidate);
                out.push_str("\r\n");
            }
        }
    }
    out
}

/// Plays `whep_url` in headless Chromium with Eyevinn's WHEP player library
/// (tests/browsers/driver/whep.mjs) on a page of another origin, until `frames` frames are decoded or
/// `seconds` pass; then screenshots to `screenshot` and unloads the player (DELETE). Every
/// JSON line the script printed.
pub async fn play_in_chromium(
    whep_url: &str,
    token: Option<&str>,
    seconds: u64,
    frames: u64,
    screenshot: &str,
) -> Vec<serde_json::Value> {
    let root = crate::repo_root().display().to_string();
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is not installed; tests/run installs it"
    );
    assert!(
        std::path::Path::new(&format!(
            "{root}/tests/browsers/driver/node_modules/@eyevinn/webrtc-player"
        ))
        .exists(),
        "@eyevinn/webrtc-player is not installed; tests/run installs it (npm ci --prefix tests/browsers/driver)"
    );
    let mut command = tokio::process::Command::new("node");
    command
        .arg(format!("{root}/tests/browsers/driver/whep.mjs"))
        .args(["--whep-url", whep_url])
        .args(["--seconds", &seconds.to_string()])
        .args(["--frames", &frames.to_string()])
        .args(["--screenshot", screenshot])
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    let output = tokio::time::timeout(Duration::from_secs(seconds + 60), command.output())
        .await
        .expect("the WHEP page script ends in time")
        .expect("run node (tests/run installs it)");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    for line in &lines {
        if line.get("console").is_some() || line.get("pageerror").is_some() {
            eprintln!("browser: {line}");
        }
    }
    lines
}
