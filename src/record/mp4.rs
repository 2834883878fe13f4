//! Fragmented MP4 (ISO/IEC 14496-12 with 14496-15 for H.264 and the Opus-in-ISOBMFF
//! mapping), pure: the initialisation segment (`ftyp` and `moov`, with no samples) and one
//! `moof` + `mdat` per fragment. Every fragment stands on its own (its decode time is absolute,
//! its data offsets count from its own `moof`), so a file cut short after any fragment plays
//! up to there: what a power cut or `kill -9` leaves behind.

use crate::media::encoder::split_annex_b;

/// The video track's clock: RTP's, so frames' times carry over as they are.
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// The audio track's clock: Opus always runs at 48 kHz.
pub const AUDIO_TIMESCALE: u32 = 48_000;
const VIDEO_TRACK: u32 = 1;
const AUDIO_TRACK: u32 = 2;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

/// What the initialisation segment describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracks {
    pub width: u16,
    pub height: u16,
    /// The stream's sequence and picture parameter sets, without start codes.
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
    /// Opus channels, when the recording has sound.
    pub audio_channels: Option<u8>,
}

impl Tracks {
    /// The tracks of a stream whose keyframe is `access_unit` (Annex B, parameter sets in
    /// front, as campeer's encoder and passthrough both make them); `None` without them.
    pub fn from_keyframe(
        access_unit: &[u8],
        width: u16,
        height: u16,
        audio_channels: Option<u8>,
    ) -> Option<Self> {
        let mut sps = None;
        let mut pps = None;
        for nal in split_annex_b(access_unit) {
            match nal.first().map(|header| header & 0x1f) {
                Some(NAL_SPS) => sps = Some(nal.to_vec()),
                Some(NAL_PPS) => pps = Some(nal.to_vec()),
                _ => {}
            }
        }
        let sps = sps.filter(|sps| sps.len() >= 4)?;
        Some(Self {
            width,
            height,
            sps,
            pps: pps?,
            audio_channels,
        })
    }
}

/// One sample of a fragment: its duration on its track's clock and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub duration: u32,
    pub sync: bool,
    pub data: Vec<u8>,
}

/// One track's part of a fragment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Run {
    /// The first sample's decode time on the track's clock, from the file's start.
    pub decode_time: u64,
    pub samples: Vec<Sample>,
}

/// An H.264 access unit (Annex B) as an MP4 sample: each NAL unit behind its 4-byte length,
/// without the parameter sets (they are in `avcC`) or access unit delimiters.
pub fn h264_sample(access_unit: &[u8]) -> Vec<u8> {
    let mut sample = Vec::with_capacity(access_unit.len());
    for nal in split_annex_b(access_unit) {
        let kind = nal.first().map(|header| header & 0x1f);
        if matches!(kind, Some(NAL_SPS | NAL_PPS | NAL_AUD) | None) {
            continue;
        }
        let Ok(length) = u32::try_from(nal.len()) else {
            continue;
        };
        sample.extend_from_slice(&length.to_be_bytes());
        sample.extend_from_slice(nal);
    }
    sample
}

/// Writes boxes: each is opened, filled, then closed, which writes its size.
struct Boxes {
    out: Vec<u8>,
    open: Vec<usize>,
}

impl Boxes {
    fn new() -> Self {
        Self {
            out: Vec::with_capacity(1024),
            open: Vec::new(),
        }
    }

    fn open(&mut self, kind: &[u8; 4]) -> &mut Self {
        self.open.push(self.out.len());
        self.out.extend_from_slice(&[0, 0, 0, 0]);
        self.out.extend_from_slice(kind);
        self
    }

    /// A full box: version and flags after the type.
    fn open_full(&mut self, kind: &[u8; 4], version: u8, flags: u32) -> &mut Self {
        self.open(kind);
        self.u32((u32::from(version) << 24) | (flags & 0x00ff_ffff))
    }

    fn close(&mut self) -> &mut Self {
        if let Some(start) = self.open.pop() {
            let size = u32::try_from(self.out.len() - start).unwrap_or(u32::MAX);
            if let Some(field) = self.out.get_mut(start..start + 4) {
                field.copy_from_slice(&size.to_be_bytes());
            }
        }
        self
    }

    fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.out.extend_from_slice(bytes);
        self
    }

    fn u8(&mut self, value: u8) -> &mut Self {
        self.out.push(value);
        self
    }

    fn u16(&mut self, value: u16) -> &mut Self {
        self.bytes(&value.to_be_bytes())
    }

    fn u32(&mut self, value: u32) -> &mut Self {
        self.bytes(&value.to_be_bytes())
    }

    fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes(&value.to_be_bytes())
    }

    fn zeros(&mut self, count: usize) -> &mut Self {
        self.out.resize(self.out.len() + count, 0);
        self
    }

    /// The identity matrix of `mvhd` and `tkhd`.
    fn matrix(&mut self) -> &mut Self {
        for value in [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
            self.u32(value);
        }
        self
    }

    fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// `ftyp` and `moov`: what a player needs before the first fragment.
pub fn init_segment(tracks: &Tracks) -> Vec<u8> {
    let mut b = Boxes::new();
    b.open(b"ftyp").bytes(b"isom").u32(0x200);
    for brand in [b"isom", b"iso6", b"iso2", b"avc1", b"mp41"] {
        b.bytes(brand);
    }
    b.close();
    b.open(b"moov");
    let next_track = if tracks.audio_channels.is_some() {
        AUDIO_TRACK + 1
    } else {
        VIDEO_TRACK + 1
    };
    b.open_full(b"mvhd", 0, 0)
        .u32(0)
        .u32(0)
        .u32(1000)
        .u32(0)
        .u32(0x0001_0000)
        .u16(0x0100)
        .zeros(10)
        .matrix()
        .zeros(24)
        .u32(next_track)
        .close();
    video_track(&mut b, tracks);
    if let Some(channels) = tracks.audio_channels {
        audio_track(&mut b, channels);
    }
    b.open(b"mvex");
    let mut ids = vec![VIDEO_TRACK];
    if tracks.audio_channels.is_some() {
        ids.push(AUDIO_TRACK);
    }
    for id in ids {
        b.open_full(b"trex", 0, 0)
            .u32(id)
            .u32(1)
            .u32(0)
            .u32(0)
            .u32(0)
            .close();
    }
    b.close(); // mvex
    b.close(); // moov
    b.finish()
}

/// `tkhd` and the start of `mdia` up to `minf`, which the caller adds. `size`: the picture's,
/// for video.
fn track_header(
    b: &mut Boxes,
    id: u32,
    timescale: u32,
    handler: &[u8; 4],
    name: &str,
    size: (u16, u16),
) {
    let is_audio = handler == b"soun";
    // 16.16 fixed point.
    let (width, height) = (u32::from(size.0) << 16, u32::from(size.1) << 16);
    b.open_full(b"tkhd", 0, 3)
        .u32(0)
        .u32(0)
        .u32(id)
        .u32(0)
        .u32(0)
        .zeros(8)
        .u16(0)
        .u16(0)
        .u16(if is_audio { 0x0100 } else { 0 })
        .u16(0)
        .matrix()
        .u32(width)
        .u32(height)
        .close();
    b.open(b"mdia");
    b.open_full(b"mdhd", 0, 0)
        .u32(0)
        .u32(0)
        .u32(timescale)
        .u32(0)
        // "und", packed as three 5-bit letters.
        .u16(0x55c4)
        .u16(0)
        .close();
    b.open_full(b"hdlr", 0, 0)
        .u32(0)
        .bytes(handler)
        .zeros(12)
        .bytes(name.as_bytes())
        .u8(0)
        .close();
}

/// `dinf` (the data is in this file) and the empty sample tables of a fragmented file, around
/// the sample entry `entry` writes.
fn sample_tables(b: &mut Boxes, entry: impl FnOnce(&mut Boxes)) {
    b.open(b"dinf");
    b.open_full(b"dref", 0, 0).u32(1);
    b.open_full(b"url ", 0, 1).close();
    b.close(); // dref
    b.close(); // dinf
    b.open(b"stbl");
    b.open_full(b"stsd", 0, 0).u32(1);
    entry(b);
    b.close(); // stsd
    b.open_full(b"stts", 0, 0).u32(0).close();
    b.open_full(b"stsc", 0, 0).u32(0).close();
    b.open_full(b"stsz", 0, 0).u32(0).u32(0).close();
    b.open_full(b"stco", 0, 0).u32(0).close();
    b.close(); // stbl
}

fn video_track(b: &mut Boxes, tracks: &Tracks) {
    b.open(b"trak");
    track_header(
        b,
        VIDEO_TRACK,
        VIDEO_TIMESCALE,
        b"vide",
        "campeer video",
        (tracks.width, tracks.height),
    );
    b.open(b"minf");
    b.open_full(b"vmhd", 0, 1).u16(0).zeros(6).close();
    sample_tables(b, |b| {
        b.open(b"avc1")
            .zeros(6)
            .u16(1)
            .zeros(16)
            .u16(tracks.width)
            .u16(tracks.height)
            .u32(0x0048_0000)
            .u32(0x0048_0000)
            .u32(0)
            .u16(1)
            .zeros(32)
            .u16(0x0018)
            .u16(0xffff);
        let sps = &tracks.sps;
        b.open(b"avcC")
            .u8(1)
            .u8(sps.get(1).copied().unwrap_or(66))
            .u8(sps.get(2).copied().unwrap_or(0))
            .u8(sps.get(3).copied().unwrap_or(31))
            .u8(0xff)
            .u8(0xe1)
            .u16(u16::try_from(sps.len()).unwrap_or(0))
            .bytes(sps)
            .u8(1)
            .u16(u16::try_from(tracks.pps.len()).unwrap_or(0))
            .bytes(&tracks.pps)
            .close();
        b.close(); // avc1
    });
    b.close(); // minf
    b.close(); // mdia
    b.close(); // trak
}

fn audio_track(b: &mut Boxes, channels: u8) {
    b.open(b"trak");
    track_header(
        b,
        AUDIO_TRACK,
        AUDIO_TIMESCALE,
        b"soun",
        "campeer sound",
        (0, 0),
    );
    b.open(b"minf");
    b.open_full(b"smhd", 0, 0).u16(0).u16(0).close();
    sample_tables(b, |b| {
        b.open(b"Opus")
            .zeros(6)
            .u16(1)
            .zeros(8)
            .u16(u16::from(channels))
            .u16(16)
            .u16(0)
            .u16(0)
            .u32(AUDIO_TIMESCALE << 16);
        // Pre-skip 0: the samples' times are their capture times, nothing to trim.
        b.open(b"dOps")
            .u8(0)
            .u8(channels)
            .u16(0)
            .u32(AUDIO_TIMESCALE)
            .u16(0)
            .u8(0)
            .close();
        b.close(); // Opus
    });
    b.close(); // minf
    b.close(); // mdia
    b.close(); // trak
}

/// Sample flags: a sync sample depends on nothing; any other depends on others and is not
/// a sync sample.
const SYNC_SAMPLE: u32 = 0x0200_0000;
const NON_SYNC_SAMPLE: u32 = 0x0101_0000;

/// One fragment: `moof` (numbered `sequence`, from 1) and its `mdat`, video then sound.
pub fn fragment(sequence: u32, video: &Run, audio: Option<&Run>) -> Vec<u8> {
    let runs: Vec<(u32, &Run)> = std::iter::once((VIDEO_TRACK, video))
        .chain(audio.map(|run| (AUDIO_TRACK, run)))
        .filter(|(_, run)| !run.samples.is_empty())
        .collect();
    let mut b = Boxes::new();
    b.open(b"moof");
    b.open_full(b"mfhd", 0, 0).u32(sequence).close();
    // Where each run's data offset goes, to fill in once the moof's size is known.
    let mut offset_fields = Vec::new();
    for (track, run) in &runs {
        b.open(b"traf");
        // default-base-is-moof: data offsets count from this fragment's moof.
        b.open_full(b"tfhd", 0, 0x02_0000).u32(*track).close();
        b.open_full(b"tfdt", 1, 0).u64(run.decode_time).close();
        // data-offset, sample-duration, sample-size and sample-flags present.
        b.open_full(b"trun", 0, 0x0701)
            .u32(u32::try_from(run.samples.len()).unwrap_or(u32::MAX));
        offset_fields.push(b.out.len());
        b.u32(0);
        for sample in &run.samples {
            b.u32(sample.duration)
                .u32(u32::try_from(sample.data.len()).unwrap_or(u32::MAX))
                .u32(if sample.sync {
                    SYNC_SAMPLE
                } else {
                    NON_SYNC_SAMPLE
                });
        }
        b.close(); // trun
        b.close(); // traf
    }
    b.close(); // moof
    let moof_size = b.out.len();
    let mut data_at = moof_size + 8;
    for (field, (_, run)) in offset_fields.iter().zip(&runs) {
        let offset = u32::try_from(data_at).unwrap_or(u32::MAX);
        if let Some(slot) = b.out.get_mut(*field..*field + 4) {
            slot.copy_from_slice(&offset.to_be_bytes());
        }
        data_at += run.samples.iter().map(|s| s.data.len()).sum::<usize>();
    }
    b.open(b"mdat");
    for (_, run) in &runs {
        for sample in &run.samples {
            b.bytes(&sample.data);
        }
    }
    b.close();
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The top-level boxes of `data`: type and size.
    fn boxes(data: &[u8]) -> Vec<(String, usize)> {
        let mut at = 0;
        let mut found = Vec::new();
        while at + 8 <= data.len() {
            let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
            found.push((
                String::from_utf8_lossy(&data[at + 4..at + 8]).into_owned(),
                size,
            ));
            assert!(size >= 8, "a box of {size} bytes");
            at += size;
        }
        assert_eq!(at, data.len(), "boxes do not end with the data");
        found
    }

    fn tracks() -> Tracks {
        let unit = [
            &[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xaa][..],
            &[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80],
            &[0, 0, 0, 1, 0x65, 0x88, 0x84],
        ]
        .concat();
        Tracks::from_keyframe(&unit, 640, 480, Some(1)).expect("parameter sets")
    }

    #[test]
    fn the_init_segment_describes_both_tracks() {
        let tracks = tracks();
        assert_eq!(tracks.sps, [0x67, 0x42, 0xc0, 0x1f, 0xaa]);
        assert_eq!(tracks.pps, [0x68, 0xce, 0x3c, 0x80]);
        let init = init_segment(&tracks);
        let top: Vec<String> = boxes(&init).into_iter().map(|(kind, _)| kind).collect();
        assert_eq!(top, ["ftyp", "moov"]);
        let text = String::from_utf8_lossy(&init);
        for kind in ["avc1", "avcC", "Opus", "dOps", "trex", "vide", "soun"] {
            assert!(text.contains(kind), "no {kind}");
        }
        let without_audio = init_segment(&Tracks {
            audio_channels: None,
            ..tracks
        });
        assert!(!String::from_utf8_lossy(&without_audio).contains("Opus"));
        // The video tkhd carries 640x480 in 16.16.
        let at = init
            .windows(8)
            .position(|w| w == [0x02, 0x80, 0, 0, 0x01, 0xe0, 0, 0])
            .is_some();
        assert!(at, "the track's size is not in its header");
    }

    #[test]
    fn a_fragment_points_at_its_own_data() {
        let video = Run {
            decode_time: 90_000,
            samples: vec![
                Sample {
                    duration: 3000,
                    sync: true,
                    data: vec![1; 10],
                },
                Sample {
                    duration: 3000,
                    sync: false,
                    data: vec![2; 5],
                },
            ],
        };
        let audio = Run {
            decode_time: 48_000,
            samples: vec![Sample {
                duration: 960,
                sync: true,
                data: vec![3; 7],
            }],
        };
        let fragment = fragment(4, &video, Some(&audio));
        let top = boxes(&fragment);
        assert_eq!(top[0].0, "moof");
        assert_eq!(top[1], ("mdat".to_owned(), 8 + 22));
        let moof_size = top[0].1;
        // The first trun's data offset lands on the video's first byte, the second on the
        // sound's.
        let offsets: Vec<usize> = fragment
            .windows(4)
            .enumerate()
            .filter(|(_, w)| *w == b"trun")
            .map(|(at, _)| {
                let field = at + 4 + 4 + 4;
                u32::from_be_bytes(fragment[field..field + 4].try_into().unwrap()) as usize
            })
            .collect();
        assert_eq!(offsets, [moof_size + 8, moof_size + 8 + 15]);
        assert_eq!(fragment[offsets[0]], 1);
        assert_eq!(fragment[offsets[1]], 3);
    }

    #[test]
    fn samples_carry_lengths_and_no_parameter_sets() {
        let unit = [
            &[0, 0, 0, 1, 0x09, 0xf0][..],
            &[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f],
            &[0, 0, 1, 0x68, 0xce],
            &[0, 0, 0, 1, 0x65, 0x88, 0x84, 0x21],
        ]
        .concat();
        assert_eq!(h264_sample(&unit), [0, 0, 0, 4, 0x65, 0x88, 0x84, 0x21]);
    }
}
