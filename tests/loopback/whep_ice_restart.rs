//! A WHEP player on webrtc-rs restarts ICE with a PATCH (RFC 9725 §4.3.2), as a player does
//! after a network change: campeer answers `200` with its new ICE credentials and candidates
//! and a new ETag, and the same session keeps playing over the new ICE generation. A PATCH
//! with the old ETag is refused, trickling under the new one is taken (up to the 64
//! candidates one offer may bring, beyond which a PATCH is refused whole), a restart without a
//! password is refused, and DELETE frees the place for the next player.

use campeer::config::Overrides;
use common::whep::WhepPlayer;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whep_player_restarts_ice_and_keeps_playing() {
    let _load = common::load::shared();
    let device = start_device(Overrides {
        max_viewers: Some(1),
        ..zero_config_overrides("cam1")
    })
    .await;
    let port = device.http_addr().port();

    let mut player = WhepPlayer::play(port, "cam1")
        .await
        .unwrap_or_else(|refusal| panic!("campeer refused the WHEP offer: {refusal:?}"));
    assert!(
        player
            .wait_for_more_frames(20, Duration::from_secs(20))
            .await,
        "no video before the restart: {:?}",
        player.snapshot(|s| (s.rtp_packets, s.connection_states.clone()))
    );
    let (first_etag, first_ufrag) = (player.etag.clone(), player.remote_ufrag());

    // A restart without the new password cannot be carried out.
    let half = player
        .patch(
            "*",
            "a=ice-ufrag:n3wU\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n",
        )
        .await;
    assert_eq!(half.status, 400, "{half:?}");

    let ice_states_before = player.snapshot(|s| s.ice_states.len());
    let restart = player.restart_ice().await;
    assert_eq!(restart.status, 200, "{restart:?}");
    assert_eq!(
        restart.header("content-type"),
        Some("application/trickle-ice-sdpfrag")
    );
    assert!(restart.body.contains("a=candidate:"), "{}", restart.body);
    assert_ne!(
        player.etag, first_etag,
        "the ETag must change with a restart"
    );
    assert_ne!(
        player.remote_ufrag(),
        first_ufrag,
        "campeer must answer a restart with new credentials"
    );

    // The same session plays on, over the new ICE generation: checks with the new
    // credentials succeed (with the old ones gone, consent would expire within seconds).
    assert!(
        wait_for(Duration::from_secs(10), || player.snapshot(|s| s
            .ice_states
            .iter()
            .skip(ice_states_before)
            .any(|state| state == "connected")))
        .await,
        "ICE did not connect again after the restart: {:?}",
        player.snapshot(|s| s.ice_states.clone())
    );
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        player
            .wait_for_more_frames(30, Duration::from_secs(10))
            .await,
        "no video after the restart"
    );
    let after = player.snapshot(|s| s.ice_states[ice_states_before..].to_vec());
    eprintln!("ICE states after the restart: {after:?}");
    assert!(
        !after
            .iter()
            .any(|state| state == "disconnected" || state == "failed"),
        "ICE lost the connection after the restart: {after:?}"
    );
    assert_eq!(device.viewers(), 1, "a restart is the same session");

    // The old ETag names an ICE generation that is gone; the new one takes a trickle.
    let candidate = "a=ice-ufrag:{U}\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n\
                     a=candidate:9 1 udp 2130706431 127.0.0.1 9 typ host\r\n";
    let local_ufrag = player.local_ufrag().await;
    let candidate = candidate.replace("{U}", &local_ufrag);
    let stale = player.patch(&first_etag, &candidate).await;
    assert_eq!(stale.status, 412, "{stale:?}");
    let current = player.patch(&player.etag.clone(), &candidate).await;
    assert_eq!(current.status, 204, "{current:?}");
    // One offer brings at most 64 candidates: a PATCH that would go over is refused whole
    // (it used to get 204 while the excess was dropped), and the room left still takes one.
    let many: String = (0..64)
        .map(|i| {
            format!(
                "a=candidate:{i} 1 udp 2130706431 127.0.0.1 {} typ host\r\n",
                10 + i
            )
        })
        .collect();
    let over = player
        .patch(
            &player.etag.clone(),
            &format!(
                "a=ice-ufrag:{local_ufrag}\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n{many}"
            ),
        )
        .await;
    assert_eq!(over.status, 400, "{over:?}");
    let one_more = player.patch(&player.etag.clone(), &candidate).await;
    assert_eq!(one_more.status, 204, "{one_more:?}");

    // The one place is taken; DELETE frees it for the next player.
    let refused = WhepPlayer::play(port, "cam1")
        .await
        .err()
        .expect("a second player while the one place is taken");
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(player.delete().await.status, 200);
    player.close().await;
    let next = WhepPlayer::play(port, "cam1")
        .await
        .unwrap_or_else(|refusal| panic!("the freed place was refused: {refusal:?}"));
    assert!(next.wait_for_more_frames(10, Duration::from_secs(20)).await);
    next.close().await;
    device.shutdown().await;
}
