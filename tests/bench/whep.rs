//! `cargo bench --bench whep`: offer to first decoded frame for a WHEP player next to an MQTT
//! viewer, against the same release daemon on loopback, both with webrtc-rs and the same
//! decoder. Each round measures a cold start (no viewer: the offer starts the encoder) and a
//! warm one (a viewer already watching) for each path. Reports medians and the parts (answer,
//! ICE+DTLS connected); asserts nothing about speed.
//!
//! The clocks start when the offer leaves: the MQTT viewer trickles, so it publishes its offer
//! at once; the WHEP player posts one complete offer, so its gathering comes first and is
//! reported on its own.

use common::whep::WhepPlayer;
use common::*;
use std::time::{Duration, Instant};

const ROUNDS: usize = 7;

/// Offer sent → (first decoded frame, answer, connected).
fn times(state: &ViewerState) -> [Duration; 3] {
    let offer = state.offer_sent_at.expect("offer sent");
    let since = |t: Option<Instant>| t.map(|t| t.duration_since(offer)).unwrap_or_default();
    [
        since(state.frames.first().map(|f| f.decoded_at)),
        since(state.answered_at),
        since(state.connected_at),
    ]
}

enum Viewer {
    Mqtt(TestViewer),
    Whep(WhepPlayer),
}

impl Viewer {
    async fn join(path: &str, broker: &Broker, http_port: u16, session: &str) -> Self {
        let viewer = match path {
            "mqtt" => Self::Mqtt(TestViewer::join(broker, "bench", session).await),
            _ => Self::Whep(
                WhepPlayer::play(http_port, "bench")
                    .await
                    .unwrap_or_else(|refusal| panic!("WHEP refused: {refusal:?}")),
            ),
        };
        let decoded = match &viewer {
            Self::Mqtt(v) => v.wait_for_more_frames(1, Duration::from_secs(30)).await,
            Self::Whep(v) => v.wait_for_more_frames(1, Duration::from_secs(30)).await,
        };
        assert!(decoded, "no frame decoded over {path}");
        viewer
    }

    fn times(&self) -> [Duration; 3] {
        match self {
            Self::Mqtt(v) => v.snapshot(times),
            Self::Whep(v) => v.snapshot(times),
        }
    }

    fn gathering(&self) -> Option<Duration> {
        match self {
            Self::Mqtt(_) => None,
            Self::Whep(v) => Some(v.gathering),
        }
    }

    async fn leave(self) {
        match self {
            Self::Mqtt(v) => {
                v.hangup().await;
                v.close().await;
            }
            Self::Whep(v) => {
                v.delete().await;
                v.close().await;
            }
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let broker = Broker::start();
    let http_port = free_port();
    let http = format!("127.0.0.1:{http_port}");
    let _daemon = DaemonProcess::spawn(&[
        "--http-listen",
        &http,
        "--broker",
        &broker.url(),
        "--device-id",
        "bench",
        "--source",
        "test",
        "--audio-source",
        "none",
        "--ice-loopback-only",
        "--idle-grace",
        "0",
        "--log",
        "warn",
    ]);
    let status = TopicWatcher::start(&broker, &status_topic("bench")).await;
    assert!(
        status
            .wait_for_last(Duration::from_secs(20), |s| s["state"] == "online")
            .await
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;

    println!("campeer WHEP vs MQTT: offer -> first decoded frame, 640x480@30, release, loopback");
    // [path][cold/warm] → runs
    let mut runs: Vec<Vec<Vec<[Duration; 3]>>> = vec![vec![Vec::new(); 2]; 2];
    let mut gathering = Vec::new();
    for round in 0..ROUNDS {
        for (p, path) in ["mqtt", "whep"].into_iter().enumerate() {
            let cold = Viewer::join(path, &broker, http_port, &format!("cold{round}")).await;
            runs[p][0].push(cold.times());
            gathering.extend(cold.gathering());
            let warm = Viewer::join(path, &broker, http_port, &format!("warm{round}")).await;
            runs[p][1].push(warm.times());
            gathering.extend(warm.gathering());
            cold.leave().await;
            warm.leave().await;
            assert!(
                status
                    .wait_for_last(Duration::from_secs(10), |s| s["viewers"] == 0)
                    .await,
                "the viewers did not leave"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let median = |runs: &[[Duration; 3]], part: usize| {
        let mut v: Vec<Duration> = runs.iter().map(|r| r[part]).collect();
        v.sort();
        ms(v[v.len() / 2])
    };
    println!("| path | encoder | first frame (median) | answer | connected | runs (ms) |");
    println!("|---|---|---|---|---|---|");
    for (p, path) in ["MQTT", "WHEP"].into_iter().enumerate() {
        for (w, when) in ["cold", "warm"].into_iter().enumerate() {
            let r = &runs[p][w];
            println!(
                "| {path} | {when} | {:.0} ms | {:.0} ms | {:.0} ms | {:?} |",
                median(r, 0),
                median(r, 1),
                median(r, 2),
                r.iter().map(|t| ms(t[0]).round()).collect::<Vec<_>>()
            );
        }
    }
    gathering.sort();
    println!(
        "WHEP player's gathering before its POST: median {:.0} ms (not in the figures above)",
        ms(gathering[gathering.len() / 2])
    );
}
