//! The viewer limit: an offer beyond it gets `busy`, the viewer being served is untouched, and
//! the place is free again once that viewer leaves.

use campeer::config::Overrides;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offers_beyond_the_limit_are_busy() {
    let _load = common::load::shared();
    let broker = Broker::start();
    let device = start_device(Overrides {
        max_viewers: Some(1),
        ..overrides(&broker, "cam1")
    })
    .await;

    let alice = TestViewer::join(&broker, "cam1", "alice").await;
    assert!(alice.wait_for_more_frames(5, Duration::from_secs(20)).await);

    let bob = TestViewer::join(&broker, "cam1", "bob").await;
    assert!(
        wait_for(Duration::from_secs(10), || bob
            .snapshot(|s| !s.errors.is_empty()))
        .await
    );
    assert_eq!(bob.snapshot(|s| s.errors[0].0.clone()), "busy");
    assert_eq!(bob.snapshot(|s| s.answers), 0);
    assert_eq!(device.viewers(), 1);
    assert!(alice.wait_for_more_frames(15, Duration::from_secs(5)).await);

    alice.hangup().await;
    assert!(wait_for(Duration::from_secs(5), || device.viewers() == 0).await);
    let carol = TestViewer::join(&broker, "cam1", "carol").await;
    assert!(carol.wait_for_more_frames(5, Duration::from_secs(20)).await);
    assert_live_frames(&carol, 640, 480);

    for viewer in [alice, bob, carol] {
        viewer.close().await;
    }
    device.shutdown().await;
}
