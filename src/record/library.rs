//! The recordings on disk: how files are named, and what is there. A name says when the
//! recording started, to the millisecond, and why (`2026-12-08T03-17-20.123Z-motion.mp4`, with
//! `-2`… should two start in the same millisecond); nothing that does not parse as one is ever listed, served or deleted,
//! and symbolic links are never followed.

use super::recorder::Trigger;
use crate::clock;
use std::path::Path;
use std::time::UNIX_EPOCH;

/// Files listed per camera at most, newest first: a year of five-minute segments.
pub const MAX_LISTED: usize = 120_000;
const EXTENSION: &str = ".mp4";

/// One recording file.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    pub file_name: String,
    pub start_unix_ms: u64,
    pub trigger: Trigger,
    pub bytes: u64,
    /// From its start to its last write (a fragment is written as the frame after it comes).
    pub duration_secs: f64,
    /// Its thumbnail's name, when it has one.
    pub thumbnail: Option<String>,
}

/// The name of the `copy`th file (from 1) started at `start_unix_ms` for `trigger`.
pub fn file_name(start_unix_ms: u64, trigger: Trigger, copy: u32) -> String {
    let stamp = clock::file_stamp(start_unix_ms);
    match copy {
        0 | 1 => format!("{stamp}-{}{EXTENSION}", trigger.name()),
        n => format!("{stamp}-{}-{n}{EXTENSION}", trigger.name()),
    }
}

/// Characters of a [`clock::file_stamp`].
const STAMP_LEN: usize = 24;

/// A recording's start (Unix milliseconds) and trigger, from its name; `None` for any other
/// name.
pub fn parse_name(name: &str) -> Option<(u64, Trigger)> {
    let stem = name.strip_suffix(EXTENSION)?;
    let (stamp, rest) = stem.split_at_checked(STAMP_LEN)?;
    let start = clock::parse_file_stamp(stamp)?;
    let rest = rest.strip_prefix('-')?;
    let (trigger, copy) = match rest.split_once('-') {
        Some((trigger, copy)) => (trigger, Some(copy)),
        None => (rest, None),
    };
    if let Some(copy) = copy
        && (copy.is_empty() || copy.len() > 4 || !copy.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    Some((start, Trigger::parse(trigger)?))
}

/// The name of a recording's thumbnail.
pub fn thumbnail_of(recording: &str) -> Option<String> {
    recording
        .strip_suffix(EXTENSION)
        .map(|stem| format!("{stem}.jpg"))
}

/// The recording a thumbnail's name belongs to, if it is one.
pub fn recording_of_thumbnail(name: &str) -> Option<String> {
    let recording = format!("{}{EXTENSION}", name.strip_suffix(".jpg")?);
    parse_name(&recording).map(|_| recording)
}

/// The recordings in `dir`, newest first (at most [`MAX_LISTED`]); regular files only.
pub fn list(dir: &Path) -> Vec<Recording> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<Recording> = entries
        .filter_map(Result::ok)
        .take(MAX_LISTED * 2)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let (start_unix_ms, trigger) = parse_name(&name)?;
            // DirEntry::metadata does not follow a symbolic link.
            let metadata = entry.metadata().ok()?;
            if !metadata.is_file() {
                return None;
            }
            let modified = metadata
                .modified()
                .ok()
                .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
                .map_or(0.0, |since| since.as_secs_f64());
            let thumbnail = thumbnail_of(&name)
                .filter(|jpg| std::fs::symlink_metadata(dir.join(jpg)).is_ok_and(|m| m.is_file()));
            Some(Recording {
                thumbnail,
                file_name: name,
                start_unix_ms,
                trigger,
                bytes: metadata.len(),
                duration_secs: (modified - start_unix_ms as f64 / 1000.0).max(0.0),
            })
        })
        .collect();
    found.sort_by(|a, b| {
        b.start_unix_ms
            .cmp(&a.start_unix_ms)
            .then_with(|| b.file_name.cmp(&a.file_name))
    });
    found.truncate(MAX_LISTED);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_and_nothing_else_parses() {
        let name = file_name(1_796_699_840_123, Trigger::Motion, 1);
        assert_eq!(name, "2026-12-08T03-17-20.123Z-motion.mp4");
        assert_eq!(
            parse_name(&name),
            Some((1_796_699_840_123, Trigger::Motion))
        );
        let second = file_name(1_796_699_840_123, Trigger::Continuous, 2);
        assert_eq!(second, "2026-12-08T03-17-20.123Z-continuous-2.mp4");
        assert_eq!(
            parse_name(&second),
            Some((1_796_699_840_123, Trigger::Continuous))
        );
        for bad in [
            "",
            "../2026-12-08T03-17-20.123Z-motion.mp4",
            "2026-12-08T03-17-20.123Z-motion.mp4/..",
            "2026-12-08T03-17-20.123Z-motion",
            "2026-12-08T03-17-20.123Z-other.mp4",
            "2026-12-08T03-17-20.123Z-motion-.mp4",
            "2026-12-08T03-17-20.123Z-motion-x.mp4",
            "2026-12-08T03-17-20Z-motion.mp4",
            "2026-12-08T03:17:20.123Z-motion.mp4",
            "%2e%2e%2fetc%2fpasswd",
            "2026-12-08T03-17-20.123Z-motion.mp4\0",
            "é026-12-08T03-17-20.123Z-motion.mp4",
        ] {
            assert_eq!(parse_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn listing_is_newest_first_and_skips_links_and_strangers() {
        let dir = tempfile::tempdir().unwrap();
        for (ms, trigger) in [
            (1_796_699_840_000, Trigger::Continuous),
            (1_796_700_140_000, Trigger::Continuous),
            (1_796_700_000_000, Trigger::Motion),
        ] {
            std::fs::write(dir.path().join(file_name(ms, trigger, 1)), b"data").unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        std::os::unix::fs::symlink(
            "/etc/passwd",
            dir.path().join("2026-12-08T04-00-00.000Z-motion.mp4"),
        )
        .unwrap();
        let listed = list(dir.path());
        let starts: Vec<u64> = listed.iter().map(|r| r.start_unix_ms).collect();
        assert_eq!(
            starts,
            [1_796_700_140_000, 1_796_700_000_000, 1_796_699_840_000]
        );
        assert_eq!(listed[1].trigger, Trigger::Motion);
        assert_eq!(listed[0].bytes, 4);
    }
}
