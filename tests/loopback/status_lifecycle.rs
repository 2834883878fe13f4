//! The status topic, with the real binary: online with the viewer count, offline after a clean
//! stop (SIGTERM), and offline after a kill through the MQTT last will.

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_tracks_viewers_and_goes_offline_on_stop_and_on_kill() {
    let _load = common::load::shared();
    let broker = Broker::start();
    let status = TopicWatcher::start(&broker, &status_topic("cam9")).await;
    let mut args = binary_args(&broker, "cam9", "test");
    args.extend(["--width", "320", "--height", "240"].map(str::to_owned));

    let mut daemon = DaemonProcess::spawn(&args);
    assert!(
        status
            .wait_for_last(Duration::from_secs(20), |s| s["state"] == "online")
            .await
    );
    let online = status.last().unwrap();
    assert_eq!(online["viewers"], 0);
    assert_eq!(online["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(online["video"]["codec"], "H264");
    assert_eq!(online["video"]["width"], 320);
    assert_eq!(online["video"]["height"], 240);
    assert_eq!(online["video"]["fps"], 30);
    assert!(online["audio"].is_null());

    let viewer = TestViewer::join(&broker, "cam9", "alice").await;
    assert!(
        viewer
            .wait_for_more_frames(5, Duration::from_secs(20))
            .await
    );
    assert_live_frames(&viewer, 320, 240);
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| s["viewers"] == 1)
            .await
    );

    // Clean stop: the viewer is told, and the retained status says offline.
    daemon.signal("TERM");
    let exit = daemon
        .wait(Duration::from_secs(15))
        .expect("campeer exits on SIGTERM");
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| *s
                == serde_json::json!({"state": "offline"}))
            .await,
        "{:?}",
        status.last()
    );
    assert!(
        wait_for(Duration::from_secs(5), || viewer.snapshot(|s| s.hangups)
            == 1)
        .await
    );
    viewer.close().await;

    // Back online, then killed: the broker publishes the last will.
    let mut daemon = DaemonProcess::spawn(&args);
    assert!(
        status
            .wait_for_last(Duration::from_secs(20), |s| s["state"] == "online")
            .await
    );
    daemon.signal("KILL");
    daemon.wait(Duration::from_secs(5)).expect("killed");
    assert!(
        status
            .wait_for_last(Duration::from_secs(10), |s| s["state"] == "offline")
            .await,
        "no last will after a kill: {:?}",
        status.last()
    );

    // A late subscriber sees the retained offline status.
    let late = TopicWatcher::start(&broker, &status_topic("cam9")).await;
    assert!(
        late.wait_for_last(Duration::from_secs(5), |s| s["state"] == "offline")
            .await
    );
}

/// The library's `run`, as the binary uses it: campeer serves on the listener it is handed
/// (bound here, not by campeer) and stops, with the offline status, when its shutdown future
/// resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_serves_on_the_listeners_it_is_given_until_told_to_stop() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _load = common::load::shared();
    init_logging();
    let broker = Broker::start();
    let status = TopicWatcher::start(&broker, &status_topic("cam8")).await;
    let config = campeer::config::Config::resolve(
        campeer::config::FileConfig::default(),
        overrides(&broker, "cam8"),
    )
    .expect("a valid config");
    let http = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let page = http.local_addr().expect("its address");
    let listeners = campeer::device::Listeners {
        http,
        broker: None,
        rtsp: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(campeer::device::run(config, listeners, async {
        let _ = stopped.await;
    }));
    assert!(
        status
            .wait_for_last(Duration::from_secs(10), |s| s["state"] == "online")
            .await,
        "campeer did not come online"
    );

    let mut client = tokio::net::TcpStream::connect(page)
        .await
        .expect("the page's port, as handed in, takes connections");
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("a request");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut response))
        .await
        .expect("an answer within 5 s")
        .expect("a response");
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response[..response.len().min(200)])
    );

    stop.send(()).expect("campeer still running");
    let result = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("run returns within 10 s of the shutdown")
        .expect("the run task");
    assert!(result.is_ok(), "{result:?}");
    // Handed to the broker before run returned; the watcher hears it a moment later.
    assert!(
        status
            .wait_for_last(Duration::from_secs(5), |s| s["state"] == "offline")
            .await,
        "no offline status after run returned: {:?}",
        status.last()
    );
}
