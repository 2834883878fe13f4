//! campeer publishes into Janus (Debian's 1.1.2, VideoRoom) over WHIP through Meetecho's
//! simple-whip-server, and viewers watch through Janus: aiortc subscribers decode the test
//! pattern with its timestamp squares readable. Measured: the first picture through Janus after
//! campeer starts, glass to glass, and campeer's CPU with one subscriber and with twenty (three
//! of them decoding), which must stay that of one publication. Janus is killed and started
//! again: campeer publishes again by itself and a viewer watches again. On shutdown campeer
//! DELETEs its session, so the endpoint is free for the next publisher at once.

use common::janus::{JanusLab, http_in};
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ENDPOINT: &str = "cam";
const TOKEN: &str = "whip-s3cret";
/// An endpoint campeer is given the wrong token for.
const GUARDED: &str = "guarded";

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn last_frames(lines: &[Value]) -> u64 {
    lines
        .iter()
        .rev()
        .find_map(|line| line["frames"].as_u64())
        .unwrap_or(0)
}

fn latencies(lines: &[Value]) -> Vec<i64> {
    lines
        .iter()
        .find_map(|line| line["latencies_ms"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_i64)
        .collect()
}

fn median(mut values: Vec<i64>) -> Option<i64> {
    values.sort_unstable();
    values.get(values.len() / 2).copied()
}

/// campeer's CPU time so far (user and system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis, from the state on: utime and stime
    // are the 12th and 13th, in clock ticks (100 a second on Linux).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| -> u64 { fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0) };
    (field(11) + field(12)) as f64 / 100.0
}

/// campeer's CPU share while `subscribers` viewers (`decoding` of them decoding) watch through
/// Janus for 14 s, measured over the 8 s in the middle; and what the viewers printed.
fn cpu_while_watched(
    lab: &JanusLab,
    python: &std::path::Path,
    pid: u32,
    subscribers: usize,
    decoding: usize,
) -> (f64, Vec<Value>) {
    let subscribers = subscribers.to_string();
    let decoding = decoding.to_string();
    let args = [
        "--seconds",
        "14",
        "--subscribers",
        subscribers.as_str(),
        "--decoding",
        decoding.as_str(),
    ];
    std::thread::scope(|scope| {
        let viewers = scope.spawn(|| lab.watch(python, &args));
        std::thread::sleep(Duration::from_secs(4));
        let (cpu_before, at) = (cpu_seconds(pid), Instant::now());
        std::thread::sleep(Duration::from_secs(8));
        let share = (cpu_seconds(pid) - cpu_before) / at.elapsed().as_secs_f64();
        (share, viewers.join().expect("the viewers"))
    })
}

/// The value of the `campeer_publication_state` series of the publication to `endpoint` for
/// `state`, from campeer's /metrics.
fn publication_state(ns: &str, http: &str, endpoint: &str, state: &str) -> Option<f64> {
    let (_, body) = http_in(ns, http, "GET", "/metrics", "");
    body.lines()
        .find(|line| {
            line.starts_with("campeer_publication_state{")
                && line.contains(&format!("/whip/endpoint/{endpoint}\""))
                && line.contains(&format!("state=\"{state}\""))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// Waits until the publication to [`ENDPOINT`] is in `state`.
fn wait_for_state(ns: &str, http: &str, state: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if publication_state(ns, http, ENDPOINT, state) == Some(1.0) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn campeer_publishes_into_janus_and_viewers_watch_through_it() {
    let _load = common::load::whole_machine();
    let Some(python) = common::aiortc::lab_and_python() else {
        return;
    };
    if !common::janus::available() {
        return;
    }
    let mut lab = JanusLab::start(ENDPOINT, TOKEN);
    lab.create_endpoint(GUARDED, TOKEN);
    let config = tempfile::NamedTempFile::new().expect("a config file");
    std::fs::write(
        config.path(),
        format!(
            "[[publish]]\nurl = \"{}\"\ntoken = \"{TOKEN}\"\n\n\
             [[publish]]\nurl = \"{}\"\ntoken = \"not-the-token\"\n",
            lab.endpoint_url(ENDPOINT),
            lab.endpoint_url(GUARDED)
        ),
    )
    .expect("write the config");
    let log_path = tempfile::NamedTempFile::new().expect("a log file");
    let read_log = || std::fs::read_to_string(log_path.path()).unwrap_or_default();
    let http = format!("127.0.0.1:{}", free_port());
    let broker = format!("127.0.0.1:{}", free_port());
    let config_path = config.path().display().to_string();
    let args = [
        "--config",
        config_path.as_str(),
        "--device-id",
        "pub",
        "--source",
        "test",
        "--audio-source",
        "test",
        "--http-listen",
        http.as_str(),
        "--embedded-broker-listen",
        broker.as_str(),
    ];

    // A viewer waits for a publisher; campeer starts: how soon is there a picture through Janus?
    let first = std::thread::scope(|scope| {
        let viewer =
            scope.spawn(|| lab.watch(&python, &["--seconds", "12", "--wait-publisher", "20"]));
        std::thread::sleep(Duration::from_millis(500));
        let started = unix_now();
        let daemon = DaemonProcess::spawn_in_namespace_logging(
            &lab.ns,
            &args,
            log_path.reopen().expect("the log"),
        );
        (viewer.join().expect("the viewer"), started, daemon)
    });
    let (lines, started, mut daemon) = first;
    let frames = last_frames(&lines);
    assert!(
        frames >= 150,
        "a viewer through Janus decoded {frames} pictures: {lines:?}\ncampeer:\n{}\nfront-end:\n{}",
        read_log(),
        lab.front_end_log()
    );
    let glass = latencies(&lines);
    assert!(
        glass.len() >= 100 && glass.iter().all(|ms| (-50..10_000).contains(ms)),
        "the timestamp squares are unreadable through Janus: {glass:?}"
    );
    let first_frame = lines
        .iter()
        .find_map(|line| line["first_frame_unix"].as_f64())
        .map(|at| at - started);
    eprintln!(
        "WHIP into Janus: first picture at a subscriber {:.2} s after campeer started; glass to \
         glass through Janus, median {:?} ms over {} pictures",
        first_frame.unwrap_or(f64::NAN),
        median(glass),
        frames
    );
    assert!(wait_for_state(
        &lab.ns,
        &http,
        "publishing",
        Duration::from_secs(5)
    ));
    // The wrong token is refused, and said so.
    assert_eq!(
        publication_state(&lab.ns, &http, GUARDED, "publishing"),
        Some(0.0)
    );
    let refused = format!("{} answered 403: Unauthorized", lab.endpoint_url(GUARDED));
    assert!(
        read_log().contains(&refused),
        "no refusal for the wrong token:\n{}",
        read_log()
    );

    // One subscriber, then twenty: campeer sends one publication either way.
    let pid = daemon.child.id();
    let (one, _) = cpu_while_watched(&lab, &python, pid, 1, 1);
    let (twenty, lines) = cpu_while_watched(&lab, &python, pid, 20, 3);
    let subscribed = lines.iter().filter(|l| l["subscribed"].is_u64()).count();
    eprintln!(
        "campeer's CPU while publishing: {:.1}% with 1 Janus subscriber, {:.1}% with {subscribed} \
         (3 decoding)",
        one * 100.0,
        twenty * 100.0
    );
    assert!(
        subscribed >= 18,
        "only {subscribed} subscribers joined: {lines:?}"
    );
    assert!(last_frames(&lines) >= 100, "{lines:?}");
    assert!(
        twenty < one * 1.5 + 0.05,
        "campeer's CPU grew with Janus' subscribers: {one:.3} → {twenty:.3}"
    );

    // Janus dies: campeer notices, tries again, and publishes once Janus is back.
    lab.kill_janus();
    let killed = Instant::now();
    assert!(
        wait_for_state(&lab.ns, &http, "retrying", Duration::from_secs(60)),
        "campeer never noticed Janus had gone:\n{}",
        read_log()
    );
    lab.start_janus();
    let restarted = unix_now();
    let again = lab.watch(&python, &["--seconds", "10", "--wait-publisher", "60"]);
    let frames = last_frames(&again);
    assert!(
        frames >= 60,
        "after Janus came back a viewer decoded {frames} pictures: {again:?}\ncampeer:\n{}\n\
         front-end:\n{}",
        read_log(),
        lab.front_end_log()
    );
    let back = again
        .iter()
        .find_map(|line| line["first_frame_unix"].as_f64())
        .map(|at| at - restarted);
    eprintln!(
        "Janus killed: campeer saw it within {:.1} s; after Janus restarted a viewer's first \
         picture came {:.2} s later",
        killed.elapsed().as_secs_f64(),
        back.unwrap_or(f64::NAN)
    );

    for line in read_log()
        .lines()
        .filter(|l| l.contains("publi") || l.contains("WHIP"))
    {
        eprintln!("campeer: {line}");
    }

    // Shutdown: campeer ends its session on the server, so the endpoint is free at once.
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(15)).is_some());
    let endpoints = lab.endpoints();
    let enabled = endpoints
        .as_array()
        .and_then(|list| list.iter().find(|e| e["id"] == ENDPOINT))
        .and_then(|e| e["enabled"].as_bool());
    assert_eq!(
        enabled,
        Some(false),
        "the endpoint is still taken after campeer stopped: {endpoints}\n{}",
        read_log()
    );
}
