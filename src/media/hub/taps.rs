//! Raw pictures for those who look at them rather than watch them: motion detection and
//! snapshots. A tap is handed each captured picture on the pipeline thread before any encoder
//! sees it (a hardware encoder may take the picture's buffer), so it costs no decode; it holds
//! the pipeline open like a viewer does, but starts no encoder.

use super::VideoHub;
use crate::media::I420Frame;
use crate::media::worker::lock;
use std::time::Duration;
use tokio::sync::oneshot;

/// Taps at once per camera: the motion detector and snapshots being taken. A request past it
/// is refused rather than queued.
pub const MAX_TAPS: usize = 16;

/// Something that looks at each raw picture. It runs on the pipeline thread between capture
/// and encode: it must take far less than a frame period (copy what it needs and hand it on).
pub trait PictureTap: Send {
    /// Looks at the next picture; `false` when it wants no more.
    fn look(&mut self, picture: &I420Frame) -> bool;
}

/// The camera's taps, with ids to remove them by.
#[derive(Default)]
pub(super) struct Taps {
    next_id: u64,
    taps: Vec<(u64, Box<dyn PictureTap>)>,
}

impl Taps {
    /// Shows `picture` to every tap; those that want no more are removed.
    pub(super) fn show(&mut self, picture: &I420Frame) {
        self.taps.retain_mut(|(_, tap)| tap.look(picture));
    }
}

/// Why no picture could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrabError {
    #[error("the camera is not live: {0}")]
    NotLive(String),
    #[error("no picture came within {0:?}")]
    TimedOut(Duration),
    #[error("too many pictures are being taken at once")]
    Busy,
    #[error("the camera's own H.264 could not be decoded: {0}")]
    Decode(String),
}

/// A tap in place; dropping it removes the tap and lets the pipeline go.
pub struct TapGuard {
    hub: VideoHub,
    id: u64,
}

impl Drop for TapGuard {
    fn drop(&mut self) {
        lock(&self.hub.inner.taps)
            .taps
            .retain(|(id, _)| *id != self.id);
        self.hub.pipeline.release();
    }
}

impl VideoHub {
    /// Shows every raw picture to `tap` from now on, keeping the camera open (as a viewer
    /// does, with no encoder started for it) until the guard is dropped or the tap says it
    /// is done. `None` when [`MAX_TAPS`] are in place already.
    pub fn tap(&self, tap: Box<dyn PictureTap>) -> Option<TapGuard> {
        let id = {
            let mut taps = lock(&self.inner.taps);
            if taps.taps.len() >= MAX_TAPS {
                return None;
            }
            taps.next_id += 1;
            let id = taps.next_id;
            taps.taps.push((id, tap));
            id
        };
        self.pipeline.acquire();
        Some(TapGuard {
            hub: self.clone(),
            id,
        })
    }

    /// A picture captured after this call: the camera's raw picture, or for a camera whose
    /// own H.264 is passed through, its next keyframe decoded. Starts the camera if nobody
    /// watches; waits at most `wait`.
    pub async fn grab_picture(&self, wait: Duration) -> Result<I420Frame, GrabError> {
        if let super::SourceState::Failed(reason) = &*self.source_state().borrow() {
            return Err(GrabError::NotLive(reason.clone()));
        }
        let grabbed = if self.inner.video.h264_passthrough {
            tokio::time::timeout(wait, self.decode_next_keyframe()).await
        } else {
            let (sender, picture) = oneshot::channel();
            let _guard = self
                .tap(Box::new(OneGrab(Some(sender))))
                .ok_or(GrabError::Busy)?;
            tokio::time::timeout(wait, async {
                picture
                    .await
                    .map_err(|_| GrabError::NotLive("the pipeline stopped".to_owned()))
            })
            .await
        };
        match grabbed {
            Ok(result) => result,
            Err(_) => Err(match &*self.source_state().borrow() {
                super::SourceState::Failed(reason) => GrabError::NotLive(reason.clone()),
                _ => GrabError::TimedOut(wait),
            }),
        }
    }

    /// The H.264 stream's next keyframe, decoded (a camera that encodes itself hands campeer
    /// no raw pictures).
    async fn decode_next_keyframe(&self) -> Result<I420Frame, GrabError> {
        let mut subscription = self.subscribe(crate::protocol::VideoCodec::H264);
        subscription.resync();
        loop {
            let Some(frame) = subscription.next_frame().await else {
                return Err(GrabError::NotLive("the pipeline stopped".to_owned()));
            };
            if frame.is_keyframe {
                let unit = frame.access_unit.clone();
                let captured = frame.capture_unix_ms;
                return tokio::task::spawn_blocking(move || decode_keyframe(&unit, captured))
                    .await
                    .map_err(|e| GrabError::Decode(e.to_string()))?;
            }
        }
    }
}

/// Takes one picture and is done.
struct OneGrab(Option<oneshot::Sender<I420Frame>>);

impl PictureTap for OneGrab {
    fn look(&mut self, picture: &I420Frame) -> bool {
        if let Some(sender) = self.0.take() {
            // Nobody waiting any more (timed out) is fine.
            let _ = sender.send(picture.clone());
        }
        false
    }
}

/// One H.264 keyframe (Annex B, with its parameter sets) as a raw picture.
fn decode_keyframe(unit: &[u8], capture_unix_ms: u64) -> Result<I420Frame, GrabError> {
    use openh264::formats::YUVSource;
    let mut decoder =
        openh264::decoder::Decoder::new().map_err(|e| GrabError::Decode(e.to_string()))?;
    let decoded = decoder
        .decode(unit)
        .map_err(|e| GrabError::Decode(e.to_string()))?
        .ok_or_else(|| GrabError::Decode("the keyframe gave no picture".to_owned()))?;
    let (width, height) = decoded.dimensions();
    let (y_stride, u_stride, v_stride) = decoded.strides();
    let mut picture = I420Frame::new(width & !1, height & !1);
    let (width, height) = (picture.width(), picture.height());
    picture.capture_unix_ms = capture_unix_ms;
    let (y, u, v) = picture.planes_mut();
    copy_rows(decoded.y(), y_stride, y, width, height);
    copy_rows(decoded.u(), u_stride, u, width / 2, height / 2);
    copy_rows(decoded.v(), v_stride, v, width / 2, height / 2);
    Ok(picture)
}

/// Copies `rows` rows of `width` bytes from a plane `stride` bytes a row; rows the source is
/// short of stay as they were.
fn copy_rows(source: &[u8], stride: usize, target: &mut [u8], width: usize, rows: usize) {
    for (row, out) in target.chunks_exact_mut(width).take(rows).enumerate() {
        if let Some(line) = source.get(row * stride..row * stride + width) {
            out.copy_from_slice(line);
        }
    }
}
