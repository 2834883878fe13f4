//! A real Prometheus scrapes campeer's /metrics with WHEP's bearer token: the figures change as
//! a viewer joins and leaves, the series of a viewer that left are gone, a scrape without the
//! token is refused, `promtool check metrics` finds nothing wrong with a scrape, and every query
//! of the Grafana dashboard in packaging/ is one Prometheus takes, on series campeer has.

use campeer::config::Overrides;
use common::prometheus::{Prometheus, Sample, promtool_check};
use common::whep::http;
use common::*;
use std::time::Duration;

const TOKEN: &str = "scrape-s3cret";
const DEVICE: &str = "cam-metrics";

fn value(samples: &[Sample]) -> Option<f64> {
    samples.first().map(|sample| sample.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_follows_viewers_joining_and_leaving() {
    if !common::prometheus::available() {
        return;
    }
    let _load = common::load::shared();
    let broker = Broker::start();
    let device = start_device(Overrides {
        whep_token: Some(TOKEN.into()),
        ..overrides(&broker, DEVICE)
    })
    .await;
    let port = device.http_addr().port();

    // The token is WHEP's: without it, nothing.
    let refused = http(port, "GET", "/metrics", &[], "").await;
    assert_eq!(refused.status, 401, "{refused:?}");
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    let wrong = http(
        port,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer nope")],
        "",
    )
    .await;
    assert_eq!(wrong.status, 401);

    let bearer = format!("Bearer {TOKEN}");
    let scrape = || async {
        let reply = http(port, "GET", "/metrics", &[("Authorization", &bearer)], "").await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        reply.body
    };
    let idle = scrape().await;
    if let Err(said) = promtool_check(&idle) {
        panic!("promtool finds fault with an idle scrape: {said}\n{idle}");
    }

    let prometheus = Prometheus::scrape(&format!("127.0.0.1:{port}"), Some(TOKEN)).await;
    let up = prometheus
        .wait_for("up{job=\"campeer\"}", Duration::from_secs(20), |s| {
            value(s) == Some(1.0)
        })
        .await;
    assert!(
        up.is_ok(),
        "Prometheus cannot scrape campeer: {up:?}\n{}",
        prometheus.log()
    );
    let viewers = format!("campeer_viewers{{device=\"{DEVICE}\"}}");
    assert!(
        prometheus
            .wait_for(&viewers, Duration::from_secs(10), |s| value(s) == Some(0.0))
            .await
            .is_ok()
    );

    let viewer = TestViewer::join(&broker, DEVICE, "alice").await;
    assert!(
        viewer
            .wait_for_more_frames(10, Duration::from_secs(20))
            .await
    );
    let joined = prometheus
        .wait_for(&viewers, Duration::from_secs(10), |s| value(s) == Some(1.0))
        .await;
    assert!(
        joined.is_ok(),
        "Prometheus never saw the viewer: {joined:?}"
    );
    let sent = "campeer_viewer_sent_bytes_total{session=\"alice\"}";
    let first = prometheus
        .wait_for(sent, Duration::from_secs(10), |s| {
            value(s).is_some_and(|v| v > 0.0)
        })
        .await
        .expect("the viewer's bytes are counted");
    assert_eq!(first[0].labels["device"], DEVICE);
    let first = first[0].value;
    let grew = prometheus
        .wait_for(sent, Duration::from_secs(10), |s| {
            value(s).is_some_and(|v| v > first)
        })
        .await;
    assert!(
        grew.is_ok(),
        "the viewer's bytes stopped at {first}: {grew:?}"
    );
    let encoding = prometheus
        .wait_for(
            "rate(campeer_frames_encoded_total{codec=\"H264\"}[5s])",
            Duration::from_secs(10),
            |s| value(s).is_some_and(|fps| fps > 5.0),
        )
        .await;
    assert!(encoding.is_ok(), "no frame rate: {encoding:?}");
    let per_frame = prometheus
        .query(
            "rate(campeer_encode_seconds_total{codec=\"H264\"}[5s]) \
             / rate(campeer_frames_encoded_total{codec=\"H264\"}[5s])",
        )
        .await;
    assert!(
        value(&per_frame).is_some_and(|seconds| seconds > 0.0 && seconds < 1.0),
        "encode time per frame: {per_frame:?}"
    );

    // With a viewer, every family has samples: the whole scrape passes promtool too.
    let watched = scrape().await;
    if let Err(said) = promtool_check(&watched) {
        panic!("promtool finds fault with a scrape: {said}\n{watched}");
    }
    eprintln!(
        "one scrape with one viewer: {} bytes, {} samples",
        watched.len(),
        watched.lines().filter(|l| !l.starts_with('#')).count()
    );

    check_dashboard(&prometheus, &watched).await;

    viewer.hangup().await;
    let left = prometheus
        .wait_for(&viewers, Duration::from_secs(10), |s| value(s) == Some(0.0))
        .await;
    assert!(left.is_ok(), "Prometheus still counts the viewer: {left:?}");
    // Its series are gone, not frozen at their last value.
    let gone = prometheus
        .wait_for(sent, Duration::from_secs(10), <[Sample]>::is_empty)
        .await;
    assert!(gone.is_ok(), "the viewer's series outlived it: {gone:?}");
    let ended = prometheus
        .wait_for(
            "campeer_sessions_ended_total{reason=\"viewer_hangup\"}",
            Duration::from_secs(10),
            |s| value(s) == Some(1.0),
        )
        .await;
    assert!(ended.is_ok(), "the hangup is not counted: {ended:?}");

    viewer.close().await;
    device.shutdown().await;
}

/// Every query of packaging/grafana/campeer.json runs in Prometheus, and every campeer metric
/// it names is described in `scrape` (a viewer's round trip, say, has samples only once
/// measured).
async fn check_dashboard(prometheus: &Prometheus, scrape: &str) {
    let path = repo_root().join("packaging/grafana/campeer.json");
    let text = std::fs::read_to_string(&path).expect("the Grafana dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|target| target["expr"].as_str().map(str::to_owned))
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    for expr in exprs {
        for name in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("campeer_"))
        {
            assert!(
                scrape.contains(&format!("# TYPE {name} ")),
                "the dashboard queries {name}, which campeer does not export"
            );
        }
        // Grafana's variables, as Grafana fills them in.
        let query = expr
            .replace("$__rate_interval", "5s")
            .replace("$device", ".*");
        // `query` fails the test if Prometheus refuses it.
        prometheus.query(&query).await;
    }
}
