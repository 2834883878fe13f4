//! A camera's recording, carried out: subscribes to the one H.264 stream (which keeps the
//! encoder running with nobody watching) and to the sound, feeds the [`Recorder`] with them
//! and with motion, and hands its decisions to the disk thread.

use super::disk::{DiskCommand, DiskSender, DiskSettings, DiskStatus, DiskWriter};
use super::recorder::{Action, AudioPacket, RecordMode, Recorder, RecorderSettings, VideoFrame};
use crate::media::audio_hub::AudioHub;
use crate::media::hub::{SourceState, VideoHub};
use crate::protocol::VideoCodec;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Motion news waiting for the recorder.
const MOTION_QUEUE: usize = 16;

/// Motion, as the recorder takes it.
#[derive(Debug, Clone, Copy)]
pub enum MotionMark {
    Started { at_unix_ms: u64 },
    Stopped { at_unix_ms: u64 },
}

/// A running recording; [`RecordingHandle::stop`] ends it cleanly.
pub struct RecordingHandle {
    mode: RecordMode,
    motion: mpsc::Sender<MotionMark>,
    status: watch::Receiver<DiskStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RecordingHandle {
    /// Starts recording `hub` (and `audio`) as `settings` say, into `disk`.
    pub fn start(
        hub: VideoHub,
        audio: Option<AudioHub>,
        settings: RecorderSettings,
        disk: DiskSettings,
    ) -> std::io::Result<Self> {
        let mode = settings.mode;
        let writer = DiskWriter::start(disk)?;
        let status = writer.status();
        let (motion, motion_inbox) = mpsc::channel(MOTION_QUEUE);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(hub, audio, settings, writer, motion_inbox, stopped));
        Ok(Self {
            mode,
            motion,
            status,
            stop: Some(stop),
            task,
        })
    }

    /// Motion started or stopped (the detector's news).
    pub fn motion(&self, mark: MotionMark) {
        if self.motion.try_send(mark).is_err() {
            tracing::warn!("the recorder is not taking motion news");
        }
    }

    pub fn mode(&self) -> RecordMode {
        self.mode
    }

    pub fn status(&self) -> DiskStatus {
        self.status.borrow().clone()
    }

    /// Writes what is pending, closes the file and waits (at most `limit`) for the disk.
    pub async fn stop(mut self, limit: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(limit, &mut self.task).await.is_err() {
            tracing::warn!("the recording did not finish within {limit:?}");
            self.task.abort();
        }
    }
}

async fn run(
    hub: VideoHub,
    audio: Option<AudioHub>,
    settings: RecorderSettings,
    writer: DiskWriter,
    mut motion: mpsc::Receiver<MotionMark>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut recorder = Recorder::new(settings);
    let mut video = hub.subscribe(VideoCodec::H264);
    video.resync();
    let mut sound = audio.as_ref().map(AudioHub::subscribe);
    let source = hub.source_state();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            frame = video.next_frame() => {
                let Some(frame) = frame else { break };
                let (width, height) = match &*source.borrow() {
                    SourceState::Live(live) => (live.size.width, live.size.height),
                    _ => (hub.video().width, hub.video().height),
                };
                recorder.push_video(VideoFrame {
                    ticks: frame.rtp_ticks,
                    unix_ms: frame.capture_unix_ms,
                    keyframe: frame.is_keyframe,
                    access_unit: frame.access_unit.clone(),
                    width: u16::try_from(width).unwrap_or(u16::MAX),
                    height: u16::try_from(height).unwrap_or(u16::MAX),
                });
            }
            packet = next_packet(&mut sound) => recorder.push_audio(AudioPacket {
                ticks: packet.rtp_ticks,
                payload: packet.payload.clone(),
            }),
            Some(mark) = motion.recv() => match mark {
                MotionMark::Started { at_unix_ms } => {
                    // A fresh keyframe makes the clip's live part start cleanly too.
                    hub.request_keyframe();
                    recorder.motion_started(at_unix_ms);
                }
                MotionMark::Stopped { at_unix_ms } => recorder.motion_stopped(at_unix_ms),
            },
        }
        carry_out(&mut recorder, &writer, &hub);
    }
    recorder.finish();
    carry_out(&mut recorder, &writer, &hub);
    // Dropping the writer lets its thread write what is queued and end.
    writer.finished().await;
}

/// Takes a picture and hands it to the disk as the thumbnail of the file started at
/// `start_unix_ms`; a recording without one is listed all the same.
async fn thumbnail(hub: VideoHub, disk: DiskSender, start_unix_ms: u64) {
    let picture = match hub.grab_picture(THUMBNAIL_WAIT).await {
        Ok(picture) => picture,
        Err(e) => {
            tracing::debug!("no thumbnail: {e}");
            return;
        }
    };
    let jpeg = tokio::task::spawn_blocking(move || {
        crate::media::snapshot::jpeg(&picture, Some(THUMBNAIL_WIDTH))
    })
    .await;
    if let Ok(Ok(jpeg)) = jpeg {
        disk.send(DiskCommand::Thumbnail {
            start_unix_ms,
            jpeg,
        });
    }
}

/// The next sound packet; never resolves without a microphone.
async fn next_packet(
    sound: &mut Option<crate::media::audio_hub::AudioSubscription>,
) -> std::sync::Arc<crate::media::audio_hub::EncodedAudio> {
    let packet = match sound {
        Some(sound) => sound.next_packet().await,
        None => None,
    };
    match packet {
        Some(packet) => packet,
        None => std::future::pending().await,
    }
}

/// How wide a recording's thumbnail is.
const THUMBNAIL_WIDTH: usize = 320;
/// How long a thumbnail may wait for a picture.
const THUMBNAIL_WAIT: Duration = Duration::from_secs(3);

fn carry_out(recorder: &mut Recorder, writer: &DiskWriter, hub: &VideoHub) {
    while let Some(action) = recorder.poll_action() {
        match action {
            Action::Open {
                start_unix_ms,
                trigger,
            } => {
                writer.send(DiskCommand::Open {
                    start_unix_ms,
                    trigger,
                });
                // A picture of now: a motion clip opens as the motion starts.
                tokio::spawn(thumbnail(
                    hub.clone(),
                    writer.sender().clone(),
                    start_unix_ms,
                ));
            }
            Action::Write(bytes) => writer.send(DiskCommand::Write(bytes)),
            Action::Close => writer.send(DiskCommand::Close),
            Action::RequestKeyframe => hub.request_keyframe(),
        }
    }
}
