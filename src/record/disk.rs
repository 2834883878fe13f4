//! Writing recordings to disk, on a thread of its own per camera: an SD card can stall for
//! seconds, which must hold up no frame and no async worker. Each fragment goes out in one
//! write and is then flushed to the card (`fdatasync`, once a fragment: under a second), so a
//! power cut loses at most the fragment being made; nothing is synced per frame.
//!
//! Before each new file, and every minute, rotation deletes recordings (this camera's and the
//! others', oldest first) older than `max_age_days`, then until `keep_free_mb` are free. When
//! that cannot be reached, no new file is started and the status says why.

use super::library::{self, file_name};
use super::recorder::Trigger;
use crate::clock;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Commands waiting for the disk: about a minute of fragments. Past it (a card that stopped
/// taking writes) fragments are dropped, which leaves a gap in the file, not a broken one.
const DISK_QUEUE: usize = 64;
/// How often rotation runs besides before each new file.
const ROTATION_PERIOD: Duration = Duration::from_secs(60);
/// Files that may share a start second and trigger.
const MAX_COPIES: u32 = 99;

/// Where and how a camera's recordings are kept.
#[derive(Debug, Clone)]
pub struct DiskSettings {
    /// `record.path`: every camera's folders, which rotation looks through.
    pub root: PathBuf,
    /// This camera's folder.
    pub dir: PathBuf,
    pub keep_free_bytes: u64,
    /// `None`: kept until space runs short.
    pub max_age: Option<Duration>,
}

/// What the writer is doing, for the status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiskStatus {
    /// The file being written.
    pub file: Option<String>,
    pub files_started: u64,
    pub bytes_written: u64,
    pub files_deleted: u64,
    /// Bytes free on the recordings' filesystem at the last look.
    pub free_bytes: Option<u64>,
    /// The last write or rotation failure, until a file is written again.
    pub error: Option<String>,
    /// Writes dropped because the disk did not keep up.
    pub fragments_dropped: u64,
}

pub enum DiskCommand {
    Open {
        start_unix_ms: u64,
        trigger: Trigger,
    },
    Write(Vec<u8>),
    Close,
    /// A picture of the recording that started at `start_unix_ms`, kept beside it (the same
    /// name, `.jpg`) for the recordings page; dropped if that file is no longer the one open.
    Thumbnail {
        start_unix_ms: u64,
        jpeg: Vec<u8>,
    },
}

/// A camera's disk writer: commands in, a status out. The thread ends when this and every
/// [`DiskSender`] are dropped.
pub struct DiskWriter {
    sender: DiskSender,
    /// Resolves when the thread has written everything and ended.
    done: tokio::sync::oneshot::Receiver<()>,
}

/// Hands commands to a camera's disk thread; cheap to clone.
#[derive(Clone)]
pub struct DiskSender {
    commands: SyncSender<DiskCommand>,
    status: watch::Sender<DiskStatus>,
}

impl DiskWriter {
    pub fn start(settings: DiskSettings) -> std::io::Result<Self> {
        let (commands, inbox) = sync_channel(DISK_QUEUE);
        let (status, _) = watch::channel(DiskStatus::default());
        let reporter = status.clone();
        let (finished, done) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("recorder-disk".into())
            .spawn(move || {
                run(&settings, &inbox, &reporter);
                let _ = finished.send(());
            })?;
        Ok(Self {
            sender: DiskSender { commands, status },
            done,
        })
    }

    /// Lets the thread write what is queued, close the file and end (once every
    /// [`DiskSender`] is gone too); resolves then.
    pub async fn finished(self) {
        let Self { sender, done } = self;
        drop(sender);
        let _ = done.await;
    }

    pub fn status(&self) -> watch::Receiver<DiskStatus> {
        self.sender.status.subscribe()
    }

    pub fn sender(&self) -> &DiskSender {
        &self.sender
    }

    pub fn send(&self, command: DiskCommand) {
        self.sender.send(command);
    }
}

impl DiskSender {
    /// Hands a command to the disk thread without waiting. With the queue full (the disk
    /// stopped taking writes) the command is dropped and counted: a dropped fragment is a gap
    /// in the file, a dropped open or close leaves the next one to start a file.
    pub fn send(&self, command: DiskCommand) {
        match self.commands.try_send(command) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.status
                    .send_modify(|status| status.fragments_dropped += 1);
                let dropped = self.status.borrow().fragments_dropped;
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        "the disk is not keeping up: {dropped} recording write(s) dropped"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("the recording disk thread is gone");
            }
        }
    }
}

fn run(settings: &DiskSettings, inbox: &Receiver<DiskCommand>, status: &watch::Sender<DiskStatus>) {
    let mut current: Option<(File, String)> = None;
    let mut failures = 0u64;
    let mut next_rotation = Instant::now();
    loop {
        let wait = next_rotation.saturating_duration_since(Instant::now());
        let command = match inbox.recv_timeout(wait) {
            Ok(command) => Some(command),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if Instant::now() >= next_rotation {
            next_rotation = Instant::now() + ROTATION_PERIOD;
            rotate(
                settings,
                current.as_ref().map(|(_, name)| name.as_str()),
                status,
            );
        }
        match command {
            None => {}
            Some(DiskCommand::Open {
                start_unix_ms,
                trigger,
            }) => {
                finish(current.take());
                next_rotation = Instant::now() + ROTATION_PERIOD;
                let free = rotate(settings, None, status);
                if free.is_some_and(|free| free < settings.keep_free_bytes) {
                    let message = format!(
                        "not recording: {} MB free on {}, and {} MB are to be kept free",
                        free.unwrap_or(0) / 1_000_000,
                        settings.root.display(),
                        settings.keep_free_bytes / 1_000_000
                    );
                    report_failure(status, &mut failures, message);
                    continue;
                }
                match create(&settings.dir, start_unix_ms, trigger) {
                    Ok((file, name)) => {
                        tracing::info!("recording to {}", settings.dir.join(&name).display());
                        status.send_modify(|status| {
                            status.file = Some(name.clone());
                            status.files_started += 1;
                        });
                        current = Some((file, name));
                    }
                    Err(e) => report_failure(
                        status,
                        &mut failures,
                        format!(
                            "cannot start a recording in {}: {e}",
                            settings.dir.display()
                        ),
                    ),
                }
            }
            Some(DiskCommand::Write(bytes)) => {
                let Some((file, name)) = &mut current else {
                    continue;
                };
                // One write per fragment, then to the card: a power cut loses at most the
                // fragment being made.
                match file.write_all(&bytes).and_then(|()| file.sync_data()) {
                    Ok(()) => status.send_modify(|status| {
                        status.bytes_written += bytes.len() as u64;
                        status.error = None;
                    }),
                    Err(e) => {
                        let message = format!("cannot write the recording {name}: {e}");
                        current = None;
                        status.send_modify(|status| status.file = None);
                        report_failure(status, &mut failures, message);
                    }
                }
            }
            Some(DiskCommand::Close) => {
                finish(current.take());
                status.send_modify(|status| status.file = None);
            }
            Some(DiskCommand::Thumbnail {
                start_unix_ms,
                jpeg,
            }) => {
                let Some((_, name)) = &current else { continue };
                let started = library::parse_name(name).map(|(start, _)| start);
                if started != Some(start_unix_ms) {
                    continue;
                }
                let path = settings.dir.join(name).with_extension("jpg");
                if let Err(e) = std::fs::write(&path, jpeg) {
                    tracing::debug!("no thumbnail for {name}: {e}");
                }
            }
        }
    }
    finish(current);
}

fn finish(file: Option<(File, String)>) {
    if let Some((file, name)) = file {
        if let Err(e) = file.sync_all() {
            tracing::warn!("the recording {name} may not be all on disk: {e}");
        }
        tracing::info!("recording {name} done");
    }
}

fn report_failure(status: &watch::Sender<DiskStatus>, failures: &mut u64, message: String) {
    *failures += 1;
    if failures.is_power_of_two() {
        tracing::error!("{message} ({failures} failure(s) so far)");
    }
    status.send_modify(|status| status.error = Some(message));
}

/// A new file for a recording that starts at `start_unix_ms`: a name no other file has.
fn create(dir: &Path, start_unix_ms: u64, trigger: Trigger) -> std::io::Result<(File, String)> {
    std::fs::create_dir_all(dir)?;
    for copy in 1..=MAX_COPIES {
        let name = file_name(start_unix_ms, trigger, copy);
        match File::options()
            .write(true)
            .create_new(true)
            .open(dir.join(&name))
        {
            Ok(file) => return Ok((file, name)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "{MAX_COPIES} recordings already started at {}",
        clock::file_stamp(start_unix_ms)
    )))
}

/// Bytes free to campeer on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct it is given and reads only the NUL-terminated path.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    let result = unsafe { libc::statvfs(path.as_ptr(), &mut stats) };
    // 32 bits wide on armv7, 64 on aarch64 and x86-64.
    #[allow(clippy::useless_conversion)]
    let (blocks, block_size) = (u64::from(stats.f_bavail), u64::from(stats.f_frsize));
    (result == 0).then(|| blocks.saturating_mul(block_size))
}

/// Deletes what is too old, then the oldest until `keep_free_bytes` are free (never
/// `current`, the file being written). Returns the space free after.
fn rotate(
    settings: &DiskSettings,
    current: Option<&str>,
    status: &watch::Sender<DiskStatus>,
) -> Option<u64> {
    if std::fs::create_dir_all(&settings.root).is_err() {
        return None;
    }
    let now = clock::unix_ms_now() / 1000;
    // Every camera's recordings, oldest first.
    let mut all: Vec<(u64, PathBuf)> = std::fs::read_dir(&settings.root)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .flat_map(|camera| {
            library::list(&camera.path())
                .into_iter()
                .map(move |recording| {
                    (
                        recording.start_unix_ms / 1000,
                        camera.path().join(recording.file_name),
                    )
                })
        })
        .filter(|(_, path)| {
            current.is_none_or(|name| path.file_name().and_then(|n| n.to_str()) != Some(name))
        })
        .collect();
    all.sort();
    let mut deleted = 0;
    let mut delete = |path: &Path| match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::info!("deleted the recording {}", path.display());
            // Its thumbnail, if it has one.
            let _ = std::fs::remove_file(path.with_extension("jpg"));
            deleted += 1;
        }
        Err(e) => tracing::warn!("cannot delete the recording {}: {e}", path.display()),
    };
    let mut kept = all.into_iter().peekable();
    if let Some(max_age) = settings.max_age {
        while let Some((start, path)) =
            kept.next_if(|(start, _)| now.saturating_sub(*start) > max_age.as_secs())
        {
            let _ = start;
            delete(&path);
        }
    }
    let mut free = free_bytes(&settings.root);
    while free.is_some_and(|free| free < settings.keep_free_bytes) {
        let Some((_, path)) = kept.next() else { break };
        delete(&path);
        free = free_bytes(&settings.root);
    }
    status.send_modify(|status| {
        status.files_deleted += deleted;
        status.free_bytes = free;
    });
    free
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(root: &Path, keep_free_bytes: u64, max_age: Option<Duration>) -> DiskSettings {
        DiskSettings {
            root: root.to_owned(),
            dir: root.join("cam"),
            keep_free_bytes,
            max_age,
        }
    }

    #[test]
    fn rotation_deletes_too_old_files_oldest_first_and_spares_the_current_one() {
        let root = tempfile::tempdir().unwrap();
        let now = clock::unix_ms_now() / 1000;
        let dir = root.path().join("cam");
        let other = root.path().join("cam2");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        let old = file_name((now - 40 * 86_400) * 1000, Trigger::Continuous, 1);
        let older_other = file_name((now - 50 * 86_400) * 1000, Trigger::Motion, 1);
        let recent = file_name((now - 60) * 1000, Trigger::Continuous, 1);
        std::fs::write(dir.join(&old), b"x").unwrap();
        std::fs::write(other.join(&older_other), b"x").unwrap();
        std::fs::write(dir.join(&recent), b"x").unwrap();
        std::fs::write(dir.join("keep-me.txt"), b"x").unwrap();
        let (status, _) = watch::channel(DiskStatus::default());
        let settings = settings(root.path(), 0, Some(Duration::from_secs(30 * 86_400)));
        rotate(&settings, None, &status);
        assert!(!dir.join(&old).exists() && !other.join(&older_other).exists());
        assert!(dir.join(&recent).exists() && dir.join("keep-me.txt").exists());
        assert_eq!(status.borrow().files_deleted, 2);
        // Asking for more free space than the disk has deletes everything but the file
        // being written.
        let another = file_name((now - 30) * 1000, Trigger::Continuous, 1);
        std::fs::write(dir.join(&another), b"x").unwrap();
        let greedy = DiskSettings {
            keep_free_bytes: u64::MAX,
            ..settings
        };
        rotate(&greedy, Some(&another), &status);
        assert!(!dir.join(&recent).exists());
        assert!(dir.join(&another).exists());
    }

    #[test]
    fn files_get_names_of_their_own() {
        let root = tempfile::tempdir().unwrap();
        let (_, first) = create(root.path(), 1_796_699_840_500, Trigger::Motion).unwrap();
        let (_, second) = create(root.path(), 1_796_699_840_500, Trigger::Motion).unwrap();
        assert_eq!(first, "2026-12-08T03-17-20.500Z-motion.mp4");
        assert_eq!(second, "2026-12-08T03-17-20.500Z-motion-2.mp4");
        assert!(free_bytes(root.path()).is_some_and(|free| free > 0));
    }
}
