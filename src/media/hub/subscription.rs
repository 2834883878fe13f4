//! A viewer's side of a stream: its subscription, which holds the pipeline open and hands it
//! the stream's frames; the keyframe requests it passes on (a viewer's PLI or FIR); and the
//! gate that gives it nothing after a gap until the next keyframe.

use super::{EncodedFrame, FollowedLink, Stream, VideoHub};
use crate::link::Link;
use crate::media::worker::lock;
use crate::protocol::VideoCodec;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::broadcast;
/// A viewer's claim on the stream. Dropping it releases the pipeline.
pub struct Subscription {
    pub(super) hub: VideoHub,
    pub(super) codec: VideoCodec,
    pub(super) receiver: broadcast::Receiver<Arc<EncodedFrame>>,
    pub(super) gate: ViewerGate,
    /// This viewer's entry among the links the encoder's rate follows.
    pub(super) link_id: Option<u64>,
    /// Frames to send before the live ones: the recent keyframe a viewer starts on.
    pub(super) backlog: VecDeque<Arc<EncodedFrame>>,
    /// Live frames up to this sequence number came in the backlog already.
    pub(super) skip_through: Option<u64>,
}

impl Subscription {
    fn stream(&self) -> &Stream {
        self.hub.inner.stream(self.codec)
    }

    /// The codec this viewer is sent.
    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    /// Lets this viewer's link limit the encoder's rate from now on (see `media::rate`);
    /// `audio_bps` is the sound this viewer is sent beside the video.
    pub fn follow_link(&mut self, link: Link, audio_bps: f64) {
        let mut viewers = lock(&self.hub.inner.stream(self.codec).viewers);
        let id = match self.link_id {
            Some(id) => id,
            None => {
                viewers.next_id += 1;
                viewers.next_id
            }
        };
        let base_layer_only = viewers
            .links
            .get(&id)
            .is_some_and(|followed| followed.base_layer_only);
        viewers.links.insert(
            id,
            FollowedLink {
                link,
                audio_bps,
                base_layer_only,
            },
        );
        self.link_id = Some(id);
    }

    /// Whether this viewer is sent the base layer only, as the stream last decided from
    /// every viewer's link (`false` before it follows a link).
    pub fn base_layer_only(&self) -> bool {
        let Some(id) = self.link_id else {
            return false;
        };
        lock(&self.stream().viewers)
            .links
            .get(&id)
            .is_some_and(|followed| followed.base_layer_only)
    }

    /// The next frame this viewer should send. After falling behind, frames up to the next
    /// keyframe are skipped (they would not decode), and a keyframe is requested.
    pub async fn next_frame(&mut self) -> Option<Arc<EncodedFrame>> {
        while let Some(frame) = self.backlog.pop_front() {
            if self.gate.admit(frame.is_keyframe) {
                return Some(frame);
            }
        }
        loop {
            match self.receiver.recv().await {
                Ok(frame) => {
                    if self.skip_through.is_some_and(|last| frame.sequence <= last) {
                        continue;
                    }
                    if self.gate.admit(frame.is_keyframe) {
                        return Some(frame);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!("viewer fell {skipped} frames behind; waiting for a keyframe");
                    self.gate.lost_frames();
                    self.stream().request_keyframe();
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Skips whatever is queued and restarts from the next keyframe, requested now. For a
    /// viewer whose decoder has just (re)connected.
    pub fn resync(&mut self) {
        self.receiver = self.receiver.resubscribe();
        self.gate.lost_frames();
        self.backlog.clear();
        self.skip_through = None;
        self.stream().request_keyframe();
    }

    /// Asks for the keyframe a viewer about to connect will start on, so that it is ready
    /// (with a frame or two after it) by the time the connection is.
    pub fn prepare_first_keyframe(&self) {
        self.stream().request_keyframe_for_new_viewer();
    }

    /// For a viewer whose decoder has just connected: starts at the latest keyframe when it
    /// is recent, sending it and the frames since at once, so the first picture does not wait
    /// for the next frame to be captured and encoded (measured with Chromium: 216 ms from
    /// offer to picture before); else from a new keyframe, asked for now.
    pub fn start_viewing(&mut self) {
        // Subscribed before the backlog is read: a frame kept meanwhile is not missed, only
        // received twice, and skipped by its sequence number.
        self.receiver = self.receiver.resubscribe();
        self.gate.lost_frames();
        let recent = lock(&self.stream().gop).recent(Instant::now());
        match recent {
            Some(frames) => {
                self.skip_through = frames.last().map(|f| f.sequence);
                self.backlog = frames.into();
            }
            None => {
                self.backlog.clear();
                self.skip_through = None;
                self.stream().request_keyframe_for_new_viewer();
            }
        }
    }

    /// Forwards a viewer's PLI/FIR.
    pub fn request_keyframe(&self) {
        self.stream().request_keyframe();
    }

    /// A handle that asks this viewer's stream for keyframes, for a task of its own.
    pub fn keyframe_requester(&self) -> KeyframeRequester {
        KeyframeRequester {
            hub: self.hub.clone(),
            codec: self.codec,
        }
    }
}

/// Asks one stream for keyframes (a viewer's PLI/FIR).
#[derive(Clone)]
pub struct KeyframeRequester {
    hub: VideoHub,
    codec: VideoCodec,
}

impl KeyframeRequester {
    pub fn request_keyframe(&self) {
        self.hub.inner.stream(self.codec).request_keyframe();
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let stream = self.hub.inner.stream(self.codec);
        if let Some(id) = self.link_id {
            lock(&stream.viewers).links.remove(&id);
        }
        // The time is noted first: the pipeline never sees no subscriber and no time.
        *lock(&stream.last_left) = Some(Instant::now());
        stream.subscribers.fetch_sub(1, Ordering::AcqRel);
        self.hub.pipeline.release();
    }
}

/// Decides which frames one viewer gets: nothing until a keyframe after a gap, since
/// predicted frames without their reference only show garbage.
#[derive(Debug, Clone, Copy)]
pub struct ViewerGate {
    awaiting_keyframe: bool,
}

impl ViewerGate {
    pub fn new() -> Self {
        Self {
            awaiting_keyframe: true,
        }
    }

    pub fn admit(&mut self, is_keyframe: bool) -> bool {
        if is_keyframe {
            self.awaiting_keyframe = false;
        }
        !self.awaiting_keyframe
    }

    pub fn lost_frames(&mut self) {
        self.awaiting_keyframe = true;
    }
}

impl Default for ViewerGate {
    fn default() -> Self {
        Self::new()
    }
}
