//! What to record and when, pure: takes the encoded stream's frames, the sound's packets and
//! the motion detector's starts and stops, and says which files to open, what to write in
//! them and when to close them. Time is the stream's own (each frame's capture time), so the
//! rules are tested without a clock.
//!
//! - Continuous: from the first keyframe on, one file per `segment` (cut at the first keyframe
//!   past it).
//! - Motion: a ring keeps the last `pre_roll` of the stream and then some, whole GOPs from a
//!   keyframe; motion opens a clip at the ring's oldest keyframe and the clip goes on until
//!   `post_roll` after the motion stopped.
//!
//! Each file is an MP4 initialisation segment and then fragments of at most [`FRAGMENT`],
//! written as they are made.

use super::mp4::{self, Run, Sample, Tracks};
pub use crate::config::RecordMode;
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::Duration;

/// How much of the stream a fragment holds at most. What a power cut loses is the fragment
/// being made, the frame being encoded and the write in flight: under a second with this.
pub const FRAGMENT: Duration = Duration::from_millis(800);
/// Sound is put in a fragment when it is this much older than the video frame that ends the
/// fragment: a packet comes a little after the frame captured with it, and is then not late.
const AUDIO_SLACK_US: u64 = 100_000;
/// How long a frame with no other to measure by is taken to last: one at 30 fps.
const LONE_FRAME_US: u64 = 33_333;
/// One Opus packet's length on its clock (20 ms at 48 kHz).
const OPUS_PACKET_TICKS: u32 = 960;
/// The most the motion ring holds, whatever the pre-roll and keyframe interval ask: at
/// 1.5 Mbit/s, over four minutes.
pub const MAX_RING_BYTES: usize = 48 * 1024 * 1024;
/// Sound packets waiting for their fragment at most (ten seconds).
const MAX_PENDING_AUDIO: usize = 500;
/// Sound packets the motion ring holds at most: it is trimmed to the video it keeps, and this
/// bounds it while no video comes (a camera that failed), at ten minutes.
const MAX_RING_AUDIO: usize = 30_000;

/// Why a file was recorded; part of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Continuous,
    Motion,
}

impl Trigger {
    pub fn name(self) -> &'static str {
        match self {
            Self::Continuous => "continuous",
            Self::Motion => "motion",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "continuous" => Some(Self::Continuous),
            "motion" => Some(Self::Motion),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderSettings {
    pub mode: RecordMode,
    pub segment: Duration,
    pub pre_roll: Duration,
    pub post_roll: Duration,
    /// Opus channels when the device has sound.
    pub audio_channels: Option<u8>,
}

/// One encoded video frame.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    /// Capture time on the stream's 90 kHz clock.
    pub ticks: u64,
    pub unix_ms: u64,
    pub keyframe: bool,
    /// Annex B, parameter sets before each keyframe.
    pub access_unit: Bytes,
    pub width: u16,
    pub height: u16,
}

impl VideoFrame {
    fn micros(&self) -> u64 {
        self.ticks * 1_000_000 / u64::from(mp4::VIDEO_TIMESCALE)
    }
}

/// One Opus packet.
#[derive(Debug, Clone)]
pub struct AudioPacket {
    /// Capture time on the sound's 48 kHz clock, which starts with the video's.
    pub ticks: u64,
    pub payload: Bytes,
}

impl AudioPacket {
    fn micros(&self) -> u64 {
        self.ticks * 1_000_000 / u64::from(mp4::AUDIO_TIMESCALE)
    }
}

/// What the recorder decided; the disk writer carries it out in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A new file, named by when its first frame was captured.
    Open {
        start_unix_ms: u64,
        trigger: Trigger,
    },
    /// Bytes for the open file: its initialisation segment, then fragments.
    Write(Vec<u8>),
    Close,
    /// The encoder should make a keyframe now (a clip or a recording waits for one).
    RequestKeyframe,
}

/// A file being written.
struct OpenFile {
    trigger: Trigger,
    /// Set at its first keyframe (a continuous recording starts at one).
    tracks: Option<Tracks>,
    /// The first frame's capture time, on each clock.
    video_start: u64,
    audio_start: u64,
    started_us: u64,
    sequence: u32,
    /// Frames of the fragment being made; each one's duration is known when the next comes.
    video: Vec<VideoFrame>,
    audio: VecDeque<AudioPacket>,
    /// Where the sound written so far ends, on its clock from the file's start.
    audio_end: u64,
    /// The last frame's time, which the next must follow.
    last_ticks: Option<u64>,
}

/// The ring of the stream before motion, from a keyframe.
#[derive(Default)]
struct Ring {
    video: VecDeque<VideoFrame>,
    audio: VecDeque<AudioPacket>,
    bytes: usize,
}

impl Ring {
    /// Keeps `frame`; drops the oldest GOP while the next one alone still covers `pre_roll`
    /// (or the ring is over its byte bound).
    fn push(&mut self, frame: VideoFrame, pre_roll: Duration) {
        if self.video.is_empty() && !frame.keyframe {
            return;
        }
        self.bytes += frame.access_unit.len();
        let newest = frame.micros();
        self.video.push_back(frame);
        let pre_roll_us = pre_roll.as_micros() as u64;
        loop {
            let second_keyframe = self.video.iter().skip(1).position(|f| f.keyframe);
            let Some(second) = second_keyframe.map(|at| at + 1) else {
                break;
            };
            let second_at = self.video.get(second).map_or(0, VideoFrame::micros);
            let covered = newest.saturating_sub(second_at) >= pre_roll_us;
            if !(covered || self.bytes > MAX_RING_BYTES) {
                break;
            }
            for dropped in self.video.drain(..second) {
                self.bytes = self.bytes.saturating_sub(dropped.access_unit.len());
            }
        }
        if self.bytes > MAX_RING_BYTES {
            // One GOP over the bound: nothing to keep it from.
            self.clear();
        }
        let oldest = self.video.front().map_or(newest, VideoFrame::micros);
        while self
            .audio
            .front()
            .is_some_and(|packet| packet.micros() < oldest)
        {
            self.audio.pop_front();
        }
    }

    fn push_audio(&mut self, packet: AudioPacket) {
        if self.video.is_empty() {
            return;
        }
        if self.audio.len() >= MAX_RING_AUDIO {
            self.audio.pop_front();
        }
        self.audio.push_back(packet);
    }

    fn clear(&mut self) {
        self.video.clear();
        self.audio.clear();
        self.bytes = 0;
    }
}

pub struct Recorder {
    settings: RecorderSettings,
    file: Option<OpenFile>,
    ring: Ring,
    /// With motion over: the clip ends at this capture time (µs on the stream's clock).
    clip_until_us: Option<u64>,
    /// The newest frame's capture time on both clocks, to place motion's wall-clock times.
    latest: Option<(u64, u64)>,
    actions: VecDeque<Action>,
    /// Sound dropped because it came after its fragment was written.
    late_audio: u64,
}

impl Recorder {
    pub fn new(settings: RecorderSettings) -> Self {
        Self {
            settings,
            file: None,
            ring: Ring::default(),
            clip_until_us: None,
            latest: None,
            actions: VecDeque::new(),
            late_audio: 0,
        }
    }

    /// Whether a file is open.
    pub fn recording(&self) -> bool {
        self.file.is_some()
    }

    /// Sound packets dropped for coming too late.
    pub fn late_audio(&self) -> u64 {
        self.late_audio
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn push_video(&mut self, frame: VideoFrame) {
        let now_us = frame.micros();
        self.latest = Some((now_us, frame.unix_ms));
        match self.settings.mode {
            RecordMode::Off => return,
            RecordMode::Continuous if self.file.is_none() => {
                self.open(Trigger::Continuous, now_us);
            }
            RecordMode::Motion if self.file.is_none() => {
                self.ring.push(frame, self.settings.pre_roll);
                return;
            }
            _ => {}
        }
        if let Some(until) = self.clip_until_us
            && now_us >= until
        {
            self.close(now_us);
            self.clip_until_us = None;
            self.ring.push(frame, self.settings.pre_roll);
            return;
        }
        self.write_frame(frame);
    }

    pub fn push_audio(&mut self, packet: AudioPacket) {
        if self.settings.audio_channels.is_none() {
            return;
        }
        match &mut self.file {
            Some(file) => {
                if file.audio.len() >= MAX_PENDING_AUDIO {
                    file.audio.pop_front();
                    self.late_audio += 1;
                }
                file.audio.push_back(packet);
            }
            None if self.settings.mode == RecordMode::Motion => self.ring.push_audio(packet),
            None => {}
        }
    }

    /// Motion started at `at_unix_ms` (the picture's capture time).
    pub fn motion_started(&mut self, at_unix_ms: u64) {
        self.clip_until_us = None;
        if self.settings.mode != RecordMode::Motion || self.file.is_some() {
            return;
        }
        // The clip starts at the latest keyframe `pre_roll` or more before the motion (the
        // ring's oldest when it reaches back no further).
        let wanted_us = self
            .stream_time(at_unix_ms)
            .saturating_sub(self.settings.pre_roll.as_micros() as u64);
        let start = self
            .ring
            .video
            .iter()
            .rposition(|frame| frame.keyframe && frame.micros() <= wanted_us)
            .unwrap_or(0);
        let frames: Vec<VideoFrame> = self.ring.video.drain(..).skip(start).collect();
        let packets: Vec<AudioPacket> = self.ring.audio.drain(..).collect();
        self.ring.bytes = 0;
        let start_us = frames
            .first()
            .map(VideoFrame::micros)
            .or(self.latest.map(|(us, _)| us))
            .unwrap_or(0);
        self.open(Trigger::Motion, start_us);
        if frames.is_empty() {
            // Nothing kept yet (the stream just began): the clip starts at the next keyframe.
            self.actions.push_back(Action::RequestKeyframe);
        }
        if let Some(file) = &mut self.file {
            file.audio.extend(packets);
        }
        for frame in frames {
            self.write_frame(frame);
        }
    }

    /// Motion stopped at `at_unix_ms`: the clip goes on for the post-roll.
    pub fn motion_stopped(&mut self, at_unix_ms: u64) {
        if self.settings.mode != RecordMode::Motion || self.file.is_none() {
            return;
        }
        let stopped_us = self.stream_time(at_unix_ms);
        self.clip_until_us = Some(stopped_us + self.settings.post_roll.as_micros() as u64);
    }

    /// A wall-clock capture time on the stream's clock, by the newest frame's pair of them.
    fn stream_time(&self, unix_ms: u64) -> u64 {
        match self.latest {
            Some((us, latest_unix_ms)) => {
                (us + unix_ms * 1000).saturating_sub(latest_unix_ms * 1000)
            }
            None => 0,
        }
    }

    /// Writes what is pending and closes the file (shutdown, or recording turned off).
    pub fn finish(&mut self) {
        if let Some(file) = &self.file {
            // The last frame lasts as long as the one before it did.
            let end = match file.video.as_slice() {
                [.., before, last] => last.micros() + last.micros().saturating_sub(before.micros()),
                [last] => last.micros() + LONE_FRAME_US,
                [] => file.started_us,
            };
            self.close(end);
        }
        self.ring.clear();
    }

    fn open(&mut self, trigger: Trigger, start_us: u64) {
        self.file = Some(OpenFile {
            trigger,
            tracks: None,
            video_start: 0,
            audio_start: 0,
            started_us: start_us,
            sequence: 0,
            video: Vec::new(),
            audio: VecDeque::new(),
            audio_end: 0,
            last_ticks: None,
        });
    }

    /// One frame into the open file: its start at a keyframe, a new file past the segment
    /// length, a fragment out when it holds [`FRAGMENT`].
    fn write_frame(&mut self, mut frame: VideoFrame) {
        // A camera may stamp two frames alike (or step back): each sample needs a time of its
        // own after the last, or players reject the file.
        if let Some(last) = self.file.as_ref().and_then(|file| file.last_ticks)
            && frame.ticks <= last
        {
            frame.ticks = last + 1;
        }
        let now_us = frame.micros();
        let segment_us = self.settings.segment.as_micros() as u64;
        let Some(file) = &mut self.file else { return };
        if file.tracks.is_none() {
            if !frame.keyframe {
                return;
            }
            let Some(tracks) = Tracks::from_keyframe(
                &frame.access_unit,
                frame.width,
                frame.height,
                self.settings.audio_channels,
            ) else {
                return;
            };
            file.video_start = frame.ticks;
            file.audio_start = now_us * u64::from(mp4::AUDIO_TIMESCALE) / 1_000_000;
            file.started_us = now_us;
            self.actions.push_back(Action::Open {
                start_unix_ms: frame.unix_ms,
                trigger: file.trigger,
            });
            self.actions
                .push_back(Action::Write(mp4::init_segment(&tracks)));
            file.tracks = Some(tracks);
            file.last_ticks = Some(frame.ticks);
            file.video.push(frame);
            return;
        }
        if frame.keyframe && now_us.saturating_sub(file.started_us) >= segment_us {
            let trigger = file.trigger;
            self.close(now_us);
            self.open(trigger, now_us);
            self.write_frame(frame);
            return;
        }
        let first_us = file.video.first().map_or(now_us, VideoFrame::micros);
        let last_us = file.video.last().map_or(now_us, VideoFrame::micros);
        let step = now_us.saturating_sub(last_us);
        if now_us.saturating_sub(first_us) + step > FRAGMENT.as_micros() as u64 {
            self.flush(now_us);
        }
        if let Some(file) = &mut self.file {
            file.last_ticks = Some(frame.ticks);
            file.video.push(frame);
        }
    }

    /// Writes the pending frames as a fragment ending at `end_us` (the next frame's time),
    /// with the sound captured before it.
    fn flush(&mut self, end_us: u64) {
        let Some(file) = &mut self.file else { return };
        if file.video.is_empty() || file.tracks.is_none() {
            return;
        }
        let end_ticks = end_us * u64::from(mp4::VIDEO_TIMESCALE) / 1_000_000;
        let frames = std::mem::take(&mut file.video);
        let decode_time = frames
            .first()
            .map_or(0, |f| f.ticks.saturating_sub(file.video_start));
        let samples = frames
            .iter()
            .enumerate()
            .map(|(i, frame)| {
                let next = frames.get(i + 1).map_or(end_ticks, |next| next.ticks);
                Sample {
                    // At least a tick: the end a fragment is cut at may round onto its last frame.
                    duration: u32::try_from(next.saturating_sub(frame.ticks).max(1)).unwrap_or(1),
                    sync: frame.keyframe,
                    data: mp4::h264_sample(&frame.access_unit),
                }
            })
            .collect();
        let video = Run {
            decode_time,
            samples,
        };
        let audio = self.settings.audio_channels.map(|_| {
            let cutoff = end_us.saturating_sub(AUDIO_SLACK_US);
            let mut run = Run::default();
            while let Some(packet) = file.audio.front() {
                if packet.micros() >= cutoff {
                    break;
                }
                let Some(packet) = file.audio.pop_front() else {
                    break;
                };
                let at = packet.ticks.saturating_sub(file.audio_start);
                if packet.micros() < file.started_us
                    || at + u64::from(OPUS_PACKET_TICKS) / 2 < file.audio_end
                {
                    // Before the file began, or overlapping what was written.
                    if packet.micros() >= file.started_us {
                        self.late_audio += 1;
                    }
                    continue;
                }
                if run.samples.is_empty() {
                    run.decode_time = at.max(file.audio_end);
                }
                run.samples.push(Sample {
                    duration: OPUS_PACKET_TICKS,
                    sync: true,
                    data: packet.payload.to_vec(),
                });
                file.audio_end =
                    run.decode_time + u64::from(OPUS_PACKET_TICKS) * run.samples.len() as u64;
            }
            run
        });
        file.sequence += 1;
        self.actions.push_back(Action::Write(mp4::fragment(
            file.sequence,
            &video,
            audio.as_ref(),
        )));
    }

    fn close(&mut self, end_us: u64) {
        self.flush(end_us);
        if let Some(file) = self.file.take()
            && file.tracks.is_some()
        {
            self.actions.push_back(Action::Close);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_EVERY: u64 = 60;

    fn keyframe_unit() -> Bytes {
        Bytes::from(
            [
                &[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xaa][..],
                &[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80],
                &[0, 0, 0, 1, 0x65, 0x88, 0x84, 0x00],
            ]
            .concat(),
        )
    }

    /// Frame `n` of a 30 fps stream with a keyframe every two seconds.
    fn frame(n: u64) -> VideoFrame {
        let keyframe = n.is_multiple_of(KEY_EVERY);
        VideoFrame {
            ticks: 90_000 + n * 3000,
            unix_ms: 1_800_000_000_000 + n * 100 / 3,
            keyframe,
            access_unit: if keyframe {
                keyframe_unit()
            } else {
                Bytes::from_static(&[0, 0, 0, 1, 0x41, 0x9a, 0x00])
            },
            width: 640,
            height: 480,
        }
    }

    fn settings(mode: RecordMode) -> RecorderSettings {
        RecorderSettings {
            mode,
            segment: Duration::from_secs(10),
            pre_roll: Duration::from_secs(3),
            post_roll: Duration::from_secs(2),
            audio_channels: Some(1),
        }
    }

    fn drain(recorder: &mut Recorder) -> Vec<Action> {
        std::iter::from_fn(|| recorder.poll_action()).collect()
    }

    /// The video `tfdt` of each fragment among `actions`, in seconds.
    fn fragment_times(actions: &[Action]) -> Vec<f64> {
        actions
            .iter()
            .filter_map(|action| match action {
                Action::Write(bytes) if bytes.get(4..8) == Some(b"moof") => {
                    let at = bytes.windows(4).position(|w| w == b"tfdt")?;
                    let field = bytes.get(at + 8..at + 16)?;
                    Some(u64::from_be_bytes(field.try_into().ok()?) as f64 / 90_000.0)
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn continuous_starts_at_a_keyframe_cuts_segments_into_short_fragments() {
        let mut recorder = Recorder::new(settings(RecordMode::Continuous));
        // The stream joins mid-GOP: nothing until the keyframe at frame 60.
        for n in 30..60 {
            recorder.push_video(frame(n));
        }
        assert!(drain(&mut recorder).is_empty());
        for n in 60..(60 + 30 * 25) {
            recorder.push_video(frame(n));
            recorder.push_audio(AudioPacket {
                ticks: (90_000 + n * 3000) * 48 / 90,
                payload: Bytes::from_static(&[0xf8, 0xff, 0xfe]),
            });
        }
        let actions = drain(&mut recorder);
        let opens: Vec<u64> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Open { start_unix_ms, .. } => Some(*start_unix_ms),
                _ => None,
            })
            .collect();
        // Segments of 10 s: at frames 60, 360 and 660.
        assert_eq!(
            opens,
            [frame(60).unix_ms, frame(360).unix_ms, frame(660).unix_ms]
        );
        assert_eq!(actions.iter().filter(|a| **a == Action::Close).count(), 2);
        // Each file's fragments start at 0 and follow each other a fragment's length apart.
        let first_file: Vec<Action> = actions
            .iter()
            .skip(1)
            .take_while(|a| **a != Action::Close)
            .cloned()
            .collect();
        let times = fragment_times(&first_file);
        assert_eq!(times.first(), Some(&0.0));
        let most = FRAGMENT.as_secs_f64();
        assert!(
            times
                .windows(2)
                .all(|w| w[1] - w[0] <= most + 1e-9 && w[1] - w[0] >= most - 0.05),
            "{times:?}"
        );
        assert!(
            (times.last().copied().unwrap_or(0.0) - 9.5).abs() < most,
            "{times:?}"
        );
        assert_eq!(recorder.late_audio(), 0);
    }

    #[test]
    fn a_motion_clip_starts_a_pre_roll_before_on_a_keyframe_and_ends_a_post_roll_after() {
        let mut recorder = Recorder::new(RecorderSettings {
            segment: Duration::from_secs(60),
            ..settings(RecordMode::Motion)
        });
        for n in 0..300 {
            recorder.push_video(frame(n));
        }
        assert!(
            drain(&mut recorder).is_empty(),
            "nothing written without motion"
        );
        // Motion at frame 300 (10 s): 3 s of pre-roll reach back to 7 s; the keyframe at or
        // before that is frame 180 (6 s).
        recorder.motion_started(frame(300).unix_ms);
        for n in 300..450 {
            recorder.push_video(frame(n));
        }
        recorder.motion_stopped(frame(450).unix_ms);
        for n in 450..600 {
            recorder.push_video(frame(n));
        }
        let actions = drain(&mut recorder);
        assert_eq!(
            actions.first(),
            Some(&Action::Open {
                start_unix_ms: frame(180).unix_ms,
                trigger: Trigger::Motion
            })
        );
        assert_eq!(actions.iter().filter(|a| **a == Action::Close).count(), 1);
        // The clip runs to 2 s after the motion stopped: frame 510.
        let times = fragment_times(&actions);
        let last = times.last().copied().unwrap_or(0.0);
        let clip_secs = (510 - 180) as f64 / 30.0;
        assert!(
            last <= clip_secs + 0.05 && last > clip_secs - 1.1,
            "{times:?}"
        );
        assert!(!recorder.recording());
        // Motion again within the ring: a new clip, from a keyframe again.
        recorder.motion_started(frame(600).unix_ms);
        recorder.push_video(frame(600));
        let again = drain(&mut recorder);
        assert!(
            matches!(again.first(), Some(Action::Open { start_unix_ms, .. })
                if *start_unix_ms == frame(540).unix_ms),
            "{:?}",
            again.first()
        );
    }

    #[test]
    fn frames_stamped_alike_still_get_times_of_their_own() {
        let mut recorder = Recorder::new(settings(RecordMode::Continuous));
        for n in 0..40 {
            let mut f = frame(n);
            // Every second frame carries the one before's time.
            f.ticks = frame(n - n % 2).ticks;
            recorder.push_video(f);
        }
        recorder.finish();
        let durations: Vec<u32> = drain(&mut recorder)
            .iter()
            .filter_map(|a| match a {
                Action::Write(bytes) if bytes.get(4..8) == Some(b"moof") => Some(bytes.clone()),
                _ => None,
            })
            .flat_map(|moof| {
                let at = moof.windows(4).position(|w| w == b"trun").unwrap();
                let count = u32::from_be_bytes(moof[at + 8..at + 12].try_into().unwrap());
                (0..count as usize)
                    .map(|i| {
                        let field = at + 16 + i * 12;
                        u32::from_be_bytes(moof[field..field + 4].try_into().unwrap())
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(durations.len(), 40);
        assert!(durations.iter().all(|d| *d > 0), "{durations:?}");
    }

    #[test]
    fn motion_before_any_keyframe_asks_for_one() {
        let mut recorder = Recorder::new(settings(RecordMode::Motion));
        recorder.push_video(frame(1));
        recorder.motion_started(frame(1).unix_ms);
        assert_eq!(drain(&mut recorder), [Action::RequestKeyframe]);
        recorder.push_video(frame(2));
        assert!(drain(&mut recorder).is_empty());
        recorder.push_video(frame(60));
        assert!(matches!(
            drain(&mut recorder).first(),
            Some(Action::Open { .. })
        ));
    }

    #[test]
    fn the_ring_is_bounded_by_bytes() {
        let mut ring = Ring::default();
        let mut big = frame(0);
        big.access_unit = Bytes::from(vec![0u8; MAX_RING_BYTES / 4]);
        for n in 0..40 {
            let mut f = big.clone();
            f.ticks = n * 3000;
            f.keyframe = n % 2 == 0;
            ring.push(f, Duration::from_secs(3600));
            assert!(ring.bytes <= MAX_RING_BYTES, "{} bytes at {n}", ring.bytes);
        }
        assert!(ring.video.front().is_some_and(|f| f.keyframe));
    }
}
