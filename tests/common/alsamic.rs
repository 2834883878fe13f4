//! A microphone without a sound card: an ALSA configuration whose PCMs capture from raw files
//! through alsa-lib's `file` plugin over a `null` slave. alsa-lib reads it from
//! `ALSA_CONFIG_PATH`, so campeer opens these PCMs by name like any capture device.
//!
//! The file plugin hands out samples as fast as they are read and repeats its last buffer at
//! the end of the file; campeer paces such a device to the clock, and the files here last far
//! longer than any test, so what a test hears is what the file holds.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The capture PCM of [`process_microphones`] that plays a 1 kHz tone from the start.
pub const TONE_MIC: &str = "testmic";
/// The capture PCM of [`process_microphones`] whose file does not exist until a test writes
/// it with [`FileMicrophones::write_tone`]`(`[`LATE_MIC_FILE`]`, ..)`: a microphone that
/// appears late.
pub const LATE_MIC: &str = "latemic";
pub const LATE_MIC_FILE: &str = "late.raw";

/// The microphones every in-process test of this binary shares. alsa-lib reads its
/// configuration per process, from `ALSA_CONFIG_PATH`, so the tests in one binary cannot each
/// install their own: the first caller installs one that defines them all. Call it before the
/// device under test starts.
pub fn process_microphones() -> &'static FileMicrophones {
    static MICROPHONES: OnceLock<FileMicrophones> = OnceLock::new();
    MICROPHONES.get_or_init(|| {
        let mics = FileMicrophones::new(&[
            FileMic {
                name: TONE_MIC,
                file: "tone.raw",
            },
            FileMic {
                name: LATE_MIC,
                file: LATE_MIC_FILE,
            },
        ]);
        // Far longer than any test runs, so the plugin never reaches its repeating end.
        mics.write_tone("tone.raw", 1000.0, 120);
        mics.install_for_this_process();
        mics
    })
}

pub struct FileMicrophones {
    dir: tempfile::TempDir,
    config: PathBuf,
}

/// A PCM to define: its name and the raw file (S16_LE, 48 kHz, mono) it captures from.
pub struct FileMic<'a> {
    pub name: &'a str,
    pub file: &'a str,
}

impl FileMicrophones {
    /// Writes the configuration; the raw files are written separately (or never, for a
    /// microphone that is missing).
    pub fn new(mics: &[FileMic<'_>]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut text = String::new();
        for mic in mics {
            let infile = dir.path().join(mic.file);
            text.push_str(&format!(
                "pcm.{name} {{\n    type file\n    slave {{ pcm {{ type null }} }}\n    \
                 file \"/dev/null\"\n    infile \"{infile}\"\n    format \"raw\"\n    \
                 hint {{ show on description \"campeer test microphone {name}\" }}\n}}\n",
                name = mic.name,
                infile = infile.display()
            ));
        }
        let config = dir.path().join("asound.conf");
        std::fs::write(&config, text).expect("write the ALSA configuration");
        Self { dir, config }
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Makes this process's alsa-lib read the test configuration. Call before anything opens
    /// ALSA (alsa-lib reads its configuration once) and before threads that might read the
    /// environment.
    pub fn install_for_this_process(&self) {
        // SAFETY: called once per process ([`process_microphones`], or a benchmark's main)
        // before anything opens ALSA. Rust's own environment access is locked; a C library
        // reading the environment at this very moment on another test's thread is the one
        // risk, and the tests that run beside this one do not touch ALSA.
        unsafe { std::env::set_var("ALSA_CONFIG_PATH", &self.config) };
    }

    /// Writes `seconds` of a sine tone at `frequency` into the microphone's file.
    pub fn write_tone(&self, file: &str, frequency: f64, seconds: u32) {
        let samples = 48_000 * seconds as usize;
        let mut bytes = Vec::with_capacity(samples * 2);
        for n in 0..samples {
            let phase = std::f64::consts::TAU * frequency * n as f64 / 48_000.0;
            let value = (phase.sin() * 8000.0).round() as i16;
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        let path = self.dir.path().join(file);
        let mut out = std::fs::File::create(&path).expect("create the tone file");
        out.write_all(&bytes).expect("write the tone file");
    }
}
