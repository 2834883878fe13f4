use super::*;
use std::collections::HashMap;

const OFFER: &str = "v=0\r\n\
o=- 1 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 103\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:0\r\n\
a=ice-ufrag:abcd\r\n\
a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=recvonly\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:103 H264/90000\r\n\
a=fmtp:103 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n";

fn seg(s: &str) -> Segment {
    Segment::parse(s).unwrap()
}

fn offer_json(sdp: &str) -> Vec<u8> {
    serde_json::json!({"type": "offer", "sdp": sdp})
        .to_string()
        .into_bytes()
}

fn candidate_json(n: u32) -> Vec<u8> {
    serde_json::json!({"type": "candidate", "candidate": {
        "candidate": format!("candidate:{n} 1 udp 1 127.0.0.1 {n} typ host"),
        "sdpMid": "0", "sdpMLineIndex": 0}})
    .to_string()
    .into_bytes()
}

const HANGUP: &[u8] = br#"{"type":"hangup"}"#;

fn core(max_viewers: usize) -> Signaling {
    Signaling::new(Limits::new(max_viewers, Duration::from_secs(30)), false)
}

fn drain(core: &mut Signaling) -> Vec<Action> {
    std::iter::from_fn(|| core.poll_action()).collect()
}

fn started(actions: &[Action]) -> Vec<&StartSession> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Start(start) => Some(start),
            _ => None,
        })
        .collect()
}

fn errors(actions: &[Action]) -> Vec<ErrorCode> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Reply {
                message: DeviceMessage::Error { code, .. },
                ..
            } => Some(*code),
            _ => None,
        })
        .collect()
}

fn forwarded_candidates(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Forward {
                    command: SessionCommand::Candidate(_),
                    ..
                }
            )
        })
        .count()
}

fn status_publishes(actions: &[Action]) -> Vec<usize> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::PublishStatus { viewers } => Some(*viewers),
            _ => None,
        })
        .collect()
}

#[test]
fn an_offer_starts_a_session_with_the_candidates_that_came_first() {
    let mut core = core(4);
    let t0 = Instant::now();
    core.handle_message(t0, seg("a"), &candidate_json(1));
    core.handle_message(t0, seg("a"), &candidate_json(2));
    assert!(drain(&mut core).is_empty(), "held, nothing to do yet");
    core.handle_message(t0, seg("a"), &offer_json(OFFER));
    let actions = drain(&mut core);
    let start = started(&actions);
    assert_eq!(start.len(), 1);
    assert_eq!(start[0].id, seg("a"));
    assert_eq!(start[0].choice.video.payload_type, 103);
    assert_eq!(start[0].early.len(), 2);
    assert_eq!(status_publishes(&actions), vec![1]);
    core.handle_message(t0, seg("a"), &candidate_json(3));
    assert_eq!(forwarded_candidates(&drain(&mut core)), 1);
}

#[test]
fn a_hung_up_session_holds_its_slot_until_its_task_has_ended_and_a_new_offer_waits_for_it() {
    let mut core = core(1);
    let t0 = Instant::now();
    core.handle_message(t0, seg("a"), &offer_json(OFFER));
    let serial = started(&drain(&mut core))[0].serial;
    core.handle_message(t0, seg("a"), HANGUP);
    let actions = drain(&mut core);
    assert!(matches!(&actions[0], Action::Stop { session } if *session == seg("a")));
    assert_eq!(core.viewers(), 0);
    assert_eq!(core.occupied(), 1);

    // The place is being given back: b waits for it instead of being told busy.
    core.handle_message(t0, seg("b"), &offer_json(OFFER));
    core.handle_message(t0, seg("b"), &candidate_json(1));
    let actions = drain(&mut core);
    assert!(errors(&actions).is_empty(), "{actions:?}");
    assert!(started(&actions).is_empty());
    assert_eq!(core.waiting(), 1);
    assert!(core.serves(&seg("b")));
    // Others may wait too, a bounded number, and take their turn.
    for n in 0..20 {
        core.handle_message(t0, seg(&format!("c{n}")), &offer_json(OFFER));
    }
    assert_eq!(core.waiting(), 8);
    assert_eq!(errors(&drain(&mut core)), vec![ErrorCode::Busy; 13]);

    core.session_ended(t0, seg("a"), serial, &EndReason::ViewerHangup);
    let actions = drain(&mut core);
    let start = started(&actions);
    assert_eq!(start.len(), 1, "{actions:?}");
    assert_eq!(start[0].id, seg("b"));
    assert_eq!(start[0].early.len(), 1, "its candidate was held");
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Reply { to, .. } if *to == seg("a"))),
        "no reply to a viewer that hung up: {actions:?}"
    );
    assert_eq!(core.waiting(), 7, "the others wait on, in turn");
}

#[test]
fn an_offer_waits_for_a_place_only_so_long() {
    let mut core = core(1);
    let t0 = Instant::now();
    core.handle_message(t0, seg("a"), &offer_json(OFFER));
    drain(&mut core);
    core.handle_message(t0, seg("a"), HANGUP);
    core.handle_message(t0, seg("b"), &offer_json(OFFER));
    drain(&mut core);
    let due = core.poll_timeout().expect("a deadline");
    assert!(due <= t0 + Duration::from_secs(5), "{due:?}");
    core.handle_timeout(t0 + Duration::from_millis(4_999));
    assert!(errors(&drain(&mut core)).is_empty());
    core.handle_timeout(t0 + Duration::from_secs(5));
    assert_eq!(errors(&drain(&mut core)), vec![ErrorCode::Busy]);
    assert!(!core.serves(&seg("b")));
}

#[test]
fn a_waiting_offer_that_hangs_up_is_forgotten() {
    let mut core = core(1);
    let t0 = Instant::now();
    core.handle_message(t0, seg("a"), &offer_json(OFFER));
    let serial = started(&drain(&mut core))[0].serial;
    core.handle_message(t0, seg("a"), HANGUP);
    core.handle_message(t0, seg("b"), &offer_json(OFFER));
    core.handle_message(t0, seg("b"), HANGUP);
    drain(&mut core);
    assert_eq!(core.waiting(), 0);
    core.session_ended(t0, seg("a"), serial, &EndReason::ViewerHangup);
    assert!(started(&drain(&mut core)).is_empty());
    assert_eq!(core.occupied(), 0);
}

#[test]
fn an_offer_hung_up_before_its_session_started_never_starts_one() {
    let mut core = core(2);
    let t0 = Instant::now();
    // Offers and hangups that reach the core in one batch, before anything is carried out.
    for n in 0..300 {
        let id = seg(&format!("flood{n}"));
        core.handle_message(t0, id.clone(), &offer_json(OFFER));
        core.handle_message(t0, id.clone(), &candidate_json(1));
        core.handle_message(t0, id, HANGUP);
    }
    let actions = drain(&mut core);
    assert!(started(&actions).is_empty(), "{actions:?}");
    assert!(errors(&actions).is_empty(), "{actions:?}");
    assert!(
        !actions.iter().any(|a| matches!(
            a,
            Action::Stop { .. } | Action::Forward { .. } | Action::Reply { .. }
        )),
        "{actions:?}"
    );
    assert_eq!(core.occupied(), 0);
    core.handle_message(t0, seg("real"), &offer_json(OFFER));
    assert_eq!(started(&drain(&mut core)).len(), 1);
}

#[test]
fn a_flood_of_offers_and_hangups_never_runs_more_sessions_than_the_limit() {
    let mut core = core(2);
    let t0 = Instant::now();
    let mut starts = 0;
    let mut refusals = 0;
    for n in 0..300 {
        let id = seg(&format!("flood{n}"));
        // Each offer is carried out before its hangup arrives.
        core.handle_message(t0, id.clone(), &offer_json(OFFER));
        let actions = drain(&mut core);
        starts += started(&actions).len();
        refusals += errors(&actions).len();
        core.handle_message(t0, id, HANGUP);
        drain(&mut core);
    }
    assert_eq!(starts, 2, "sessions still ending count against the limit");
    assert_eq!(refusals, 0, "each waited for a place, then hung up");
    assert_eq!(core.occupied(), 2);
    // A real viewer in the middle of it waits, and gets the first place given back.
    core.handle_message(t0, seg("real"), &offer_json(OFFER));
    assert!(drain(&mut core).is_empty());
    core.session_ended(t0, seg("flood0"), 1, &EndReason::ViewerHangup);
    let actions = drain(&mut core);
    assert_eq!(started(&actions).len(), 1);
    assert_eq!(started(&actions)[0].id, seg("real"));
}

#[test]
fn a_session_unconnected_past_the_grace_gives_its_place_to_a_new_offer() {
    let mut core = core(2);
    let t0 = Instant::now();
    let mut serials = HashMap::new();
    for (id, answered) in [("ghost1", 0), ("ghost2", 500)] {
        let at = t0 + Duration::from_millis(answered);
        core.handle_message(at, seg(id), &offer_json(OFFER));
        let serial = started(&drain(&mut core))[0].serial;
        core.session_answered(at, &seg(id), serial);
        serials.insert(id, serial);
    }
    // Inside the grace: nobody is displaced yet, but ghost1 will have to give its place
    // before the offer's wait is over, so carol waits.
    let early = t0 + Duration::from_millis(2_900);
    core.handle_message(early, seg("carol"), &offer_json(OFFER));
    assert!(drain(&mut core).is_empty());
    assert_eq!(core.waiting(), 1);
    assert_eq!(core.poll_timeout(), Some(t0 + Duration::from_secs(3)));
    // ghost2 connects; ghost1 reaches the end of its grace without having connected.
    core.session_connected(&seg("ghost2"), serials["ghost2"]);
    let later = t0 + Duration::from_secs(3);
    core.handle_timeout(later);
    let actions = drain(&mut core);
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::Reply { to, message: DeviceMessage::Hangup } if *to == seg("ghost1")
        )),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Stop { session } if *session == seg("ghost1")))
    );
    assert!(
        started(&actions).is_empty(),
        "carol waits for the place to be given back"
    );
    core.session_ended(
        later,
        seg("ghost1"),
        serials["ghost1"],
        &EndReason::ViewerHangup,
    );
    let actions = drain(&mut core);
    assert_eq!(started(&actions)[0].id, seg("carol"));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Reply { to, .. } if *to == seg("ghost1"))),
        "ghost1 was told once: {actions:?}"
    );
    // A connected session is never displaced.
    let carol = started(&actions)[0].serial;
    core.session_answered(later, &seg("carol"), carol);
    core.session_connected(&seg("carol"), carol);
    core.handle_message(
        t0 + Duration::from_secs(60),
        seg("dave"),
        &offer_json(OFFER),
    );
    assert_eq!(errors(&drain(&mut core)), vec![ErrorCode::Busy]);
}

#[test]
fn a_session_that_has_not_answered_is_waited_for_but_not_displaced() {
    let mut core = core(1);
    let t0 = Instant::now();
    core.handle_message(t0, seg("slow"), &offer_json(OFFER));
    drain(&mut core);
    // It may yet be hung up (a burst's offer) or answer and never connect: b waits.
    core.handle_message(t0, seg("b"), &offer_json(OFFER));
    assert!(drain(&mut core).is_empty());
    core.handle_timeout(t0 + Duration::from_secs(5));
    let actions = drain(&mut core);
    assert_eq!(errors(&actions), vec![ErrorCode::Busy]);
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Stop { .. })),
        "{actions:?}"
    );
}

#[test]
fn a_session_that_ends_by_itself_is_forgotten_and_its_viewer_told() {
    let mut core = core(2);
    let t0 = Instant::now();
    core.handle_message(t0, seg("a"), &offer_json(OFFER));
    let serial = started(&drain(&mut core))[0].serial;
    // A stale report about an earlier session under the same id changes nothing.
    core.session_ended(t0, seg("a"), serial + 100, &EndReason::Timeout);
    assert!(drain(&mut core).is_empty());
    core.session_ended(t0, seg("a"), serial, &EndReason::Timeout);
    let actions = drain(&mut core);
    assert!(matches!(&actions[0], Action::Forget { session } if *session == seg("a")));
    assert!(matches!(
        &actions[1],
        Action::Reply { to, message: DeviceMessage::Hangup } if *to == seg("a")
    ));
    assert_eq!(core.occupied(), 0);
}

#[test]
fn a_session_that_cannot_answer_tells_its_viewer_the_errors_code_not_a_hangup() {
    use crate::signaling::sessions::SessionError;
    let mut core = core(2);
    let t0 = Instant::now();
    for (id, error, code) in [
        (
            "a",
            SessionError::OfferRefused("no ice-ufrag".into()),
            ErrorCode::BadRequest,
        ),
        (
            "b",
            SessionError::Setup("cannot add the video track".into()),
            ErrorCode::Internal,
        ),
    ] {
        core.handle_message(t0, seg(id), &offer_json(OFFER));
        let serial = started(&drain(&mut core))[0].serial;
        core.session_ended(t0, seg(id), serial, &EndReason::SetupFailed(error));
        let actions = drain(&mut core);
        assert_eq!(errors(&actions), vec![code]);
        assert!(
            !actions.iter().any(|a| matches!(
                a,
                Action::Reply {
                    message: DeviceMessage::Hangup,
                    ..
                }
            )),
            "{actions:?}"
        );
    }
    assert_eq!(core.occupied(), 0);
}

#[test]
fn bad_messages_and_offers_get_typed_refusals() {
    let mut core = core(2);
    let t0 = Instant::now();
    core.handle_message(t0, seg("a"), b"{not json");
    core.handle_message(t0, seg("a"), &offer_json("v=0\r\nm=audio 9 RTP/AVP 0\r\n"));
    let av1_only = OFFER
        .replace("SAVPF 96 103", "SAVPF 96")
        .replace("VP8/90000", "AV1/90000");
    core.handle_message(t0, seg("a"), &offer_json(&av1_only));
    let hostile = OFFER.replace("SAVPF 96 103", "SAVPF 96 103 70000");
    core.handle_message(t0, seg("a"), &offer_json(&hostile));
    let actions = drain(&mut core);
    assert_eq!(
        errors(&actions),
        vec![
            ErrorCode::BadRequest,
            ErrorCode::Unsupported,
            ErrorCode::Unsupported,
            ErrorCode::BadRequest
        ]
    );
    assert!(started(&actions).is_empty());
    assert_eq!(core.occupied(), 0);
}

#[test]
fn an_offer_without_h264_is_answered_in_vp8_unless_the_device_has_none() {
    let vp8_only = OFFER.replace("SAVPF 96 103", "SAVPF 96");
    let t0 = Instant::now();
    let mut answering = core(2);
    answering.handle_message(t0, seg("a"), &offer_json(&vp8_only));
    let actions = drain(&mut answering);
    let start = started(&actions);
    assert_eq!(start.len(), 1, "{actions:?}");
    assert_eq!(start[0].choice.video.codec, VideoCodec::Vp8);
    assert_eq!(start[0].choice.video.payload_type, 96);
    // A camera passing its own H.264 through: nothing to send this viewer.
    let mut passthrough = core(2).with_video_codecs(&[VideoCodec::H264]);
    passthrough.handle_message(t0, seg("a"), &offer_json(&vp8_only));
    let actions = drain(&mut passthrough);
    assert_eq!(errors(&actions), vec![ErrorCode::Unsupported]);
    assert!(started(&actions).is_empty());
}

#[test]
fn error_replies_are_rate_limited_over_all_viewers() {
    let mut core = core(2);
    let t0 = Instant::now();
    for n in 0..1000 {
        core.handle_message(t0, seg(&format!("junk{n}")), b"junk");
    }
    assert_eq!(errors(&drain(&mut core)).len(), 20, "the burst");
    core.handle_message(t0 + Duration::from_secs(1), seg("late"), b"junk");
    assert_eq!(errors(&drain(&mut core)).len(), 1, "refilled");
    // Answers are not errors: a real viewer still gets in.
    core.handle_message(t0 + Duration::from_secs(1), seg("real"), &offer_json(OFFER));
    assert_eq!(started(&drain(&mut core)).len(), 1);
}

#[test]
fn candidates_are_capped_per_offer() {
    let mut core = core(2);
    let t0 = Instant::now();
    core.handle_message(t0, seg("a"), &offer_json(OFFER));
    drain(&mut core);
    for n in 0..20_000 {
        core.handle_message(t0, seg("a"), &candidate_json(n));
    }
    assert_eq!(forwarded_candidates(&drain(&mut core)), 64);
    assert_eq!(core.candidate_room(&seg("a")), 0);
    assert_eq!(core.candidate_room(&seg("nobody")), 0);
    // A renegotiation (an ICE restart) brings new candidates.
    core.handle_message(t0, seg("a"), &offer_json(OFFER));
    assert_eq!(core.candidate_room(&seg("a")), 64);
    for n in 0..100 {
        core.handle_message(t0, seg("a"), &candidate_json(n));
    }
    let actions = drain(&mut core);
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Forward {
            command: SessionCommand::Offer(_),
            ..
        }
    )));
    assert_eq!(forwarded_candidates(&actions), 64);
}

#[test]
fn renegotiations_are_rate_limited_and_may_not_change_the_codecs() {
    let mut core = core(2);
    let t0 = Instant::now();
    core.handle_message(t0, seg("a"), &offer_json(OFFER));
    drain(&mut core);
    let other_pt = OFFER.replace("103", "104");
    core.handle_message(t0, seg("a"), &offer_json(&other_pt));
    assert_eq!(errors(&drain(&mut core)), vec![ErrorCode::Unsupported]);
    let mut forwarded = 0;
    let mut limited = 0;
    for s in 0..30 {
        core.handle_message(t0 + Duration::from_secs(s), seg("a"), &offer_json(OFFER));
        let actions = drain(&mut core);
        forwarded += actions
            .iter()
            .filter(|a| matches!(a, Action::Forward { .. }))
            .count();
        limited += errors(&actions)
            .iter()
            .filter(|c| **c == ErrorCode::RateLimited)
            .count();
    }
    // The refused codec change counted as one of the ten.
    assert_eq!((forwarded, limited), (9, 21));
    core.handle_message(t0 + Duration::from_secs(120), seg("a"), &offer_json(OFFER));
    assert_eq!(errors(&drain(&mut core)), vec![], "a new minute");
}

#[test]
fn status_publishes_are_coalesced_and_end_with_the_current_count() {
    let mut core = core(64);
    let t0 = Instant::now();
    core.broker_connected(t0);
    assert_eq!(status_publishes(&drain(&mut core)), vec![0]);
    let mut publishes = Vec::new();
    for n in 0..40 {
        let now = t0 + Duration::from_millis(10 * n);
        core.handle_message(now, seg(&format!("v{n}")), &offer_json(OFFER));
        core.handle_timeout(now);
        publishes.extend(status_publishes(&drain(&mut core)));
    }
    assert!(publishes.is_empty(), "{publishes:?}");
    let due = core.poll_timeout().unwrap();
    assert_eq!(due, t0 + Duration::from_millis(500));
    core.handle_timeout(due);
    assert_eq!(status_publishes(&drain(&mut core)), vec![40]);
}

#[test]
fn shutdown_tells_every_viewer_and_stops_every_session() {
    let mut core = core(4);
    let t0 = Instant::now();
    for id in ["a", "b"] {
        core.handle_message(t0, seg(id), &offer_json(OFFER));
    }
    drain(&mut core);
    core.handle_message(t0, seg("b"), HANGUP);
    drain(&mut core);
    assert_eq!(core.shutdown(), 2, "one served, one already ending");
    let actions = drain(&mut core);
    let hangups = actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Reply {
                    message: DeviceMessage::Hangup,
                    ..
                }
            )
        })
        .count();
    assert_eq!(hangups, 1);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Stop { session } if *session == seg("a")))
    );
}

#[test]
fn early_candidates_expire_on_housekeeping() {
    let mut core = Signaling::new(Limits::new(2, Duration::from_secs(5)), false);
    let t0 = Instant::now();
    core.handle_message(t0, seg("a"), &candidate_json(1));
    core.handle_timeout(t0 + Duration::from_secs(6));
    core.handle_timeout(t0 + Duration::from_secs(7));
    core.handle_message(t0 + Duration::from_secs(7), seg("a"), &offer_json(OFFER));
    assert!(started(&drain(&mut core))[0].early.is_empty());
}

#[test]
fn a_refused_renegotiation_is_answered_even_while_junk_uses_up_the_error_replies() {
    let mut core = core(2);
    let t0 = Instant::now();
    core.handle_message(t0, seg("a"), &offer_json(OFFER));
    drain(&mut core);
    for n in 0..100 {
        core.handle_message(t0, seg(&format!("junk{n}")), b"junk");
    }
    assert_eq!(
        errors(&drain(&mut core)).len(),
        20,
        "the junk got its burst"
    );
    // The viewer's own offer with its H.264 profile split inside a character.
    let hostile = OFFER.replace("profile-level-id=42e01f", "profile-level-id=a\u{e9}001");
    core.handle_message(t0, seg("a"), &offer_json(&hostile));
    let actions = drain(&mut core);
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::Reply { to, message: DeviceMessage::Error { .. } } if *to == seg("a")
        )),
        "the renegotiation got no reply: {actions:?}"
    );
}
