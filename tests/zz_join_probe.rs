mod common;
use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn probe() {
    let broker = Broker::start();
    let device = start_device(overrides(&broker, "cam1")).await;
    for i in 0..12 {
        let v = TestViewer::join(&broker, "cam1", &format!("v{i}")).await;
        assert!(v.wait_for_more_frames(1, Duration::from_secs(30)).await);
        let t = v.snapshot(|s| {
            let o = s.offer_sent_at.unwrap();
            let since = |t: Option<Instant>| t.map(|t| t.duration_since(o)).unwrap_or_default();
            (since(Some(s.frames[0].decoded_at)), since(s.answered_at), since(s.connected_at))
        });
        eprintln!("PROBE v{i}: {t:?} at {:?}", std::time::SystemTime::now());
        v.hangup().await;
        v.close().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    device.shutdown().await;
}
