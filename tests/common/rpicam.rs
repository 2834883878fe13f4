//! A fake `rpicam-vid` for the camera-module tests: the program campeer runs, faked at its
//! interface (arguments, raw frames on standard output, metadata on a descriptor), showing the
//! same colour bars as the FUSE camera. The fake itself is `fake_rpicam_vid.py`.

use std::path::{Path, PathBuf};

pub struct FakeRpicam {
    dir: tempfile::TempDir,
}

impl FakeRpicam {
    /// A board with these camera modules (sensor names), streaming at `fps`, each frame
    /// leaving the camera `delays_ms[0]`, `delays_ms[1]`, `delays_ms[0]`... after exposure.
    pub fn install(cameras: &[&str], delays_ms: [u64; 2]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = serde_json::json!({
            "cameras": cameras,
            "bars": super::fakecam::BARS.iter().map(|&(y, u, v)| [y, u, v]).collect::<Vec<_>>(),
            "delays_ms": delays_ms,
        });
        std::fs::write(dir.path().join("config.json"), config.to_string()).expect("config");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fake_rpicam_vid.py");
        std::fs::create_dir(dir.path().join("bin")).expect("bin dir");
        let program = dir.path().join("bin/rpicam-vid");
        std::fs::write(
            &program,
            format!(
                "#!/bin/sh\nexec python3 {} {} \"$@\"\n",
                script.display(),
                dir.path().display()
            ),
        )
        .expect("the fake program");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
            .expect("make it executable");
        Self { dir }
    }

    /// The fake program's path (named rpicam-vid).
    pub fn program(&self) -> PathBuf {
        self.dir.path().join("bin/rpicam-vid")
    }

    /// A directory to put first on PATH so that `rpicam-vid` is the fake.
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    /// Unplugs every camera module (a running stream fails, listing shows none) or plugs them
    /// back.
    pub fn set_unplugged(&self, unplugged: bool) {
        let flag = self.dir.path().join("unplugged");
        if unplugged {
            std::fs::write(flag, b"").expect("unplug");
        } else {
            let _ = std::fs::remove_file(flag);
        }
    }

    /// The arguments of every stream started so far.
    pub fn starts(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.dir.path().join("starts"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}
