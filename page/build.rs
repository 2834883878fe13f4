//! Compresses the viewer page's files (assets/) with gzip into OUT_DIR, where the crate's
//! `ASSETS` takes them from: the binary carries 115 KB instead of 370 KB (mqtt.js alone is
//! 342 KB), and a page load over a Pi's Wi-Fi moves a third of the bytes. Each file is one
//! gzip member with the plain 10-byte header (no name, no extra fields: checked here), which
//! lets the daemon inflate it for a rare client without gzip by skipping header and trailer.

use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::Path;

/// Compresses every file under assets/ (the crate's `ASSETS` says which are served, and how).
fn main() {
    let out_dir = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts");
    // A directory: cargo looks at every file under it.
    println!("cargo:rerun-if-changed=assets");
    for asset in files_under(Path::new("assets")) {
        let relative = asset
            .strip_prefix("assets")
            .expect("every file found is under assets/");
        let text = std::fs::read(&asset)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", asset.display()));
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder
            .write_all(&text)
            .and_then(|()| encoder.finish())
            .and_then(|gz| {
                // FLG = 0: nothing between the 10-byte header and the deflate stream.
                assert_eq!(gz.get(3), Some(&0), "a gzip header with optional fields");
                let mut target = Path::new(&out_dir).join(relative).into_os_string();
                target.push(".gz");
                let target = std::path::PathBuf::from(target);
                if let Some(dir) = target.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(target, gz)
            })
            .unwrap_or_else(|e| panic!("cannot compress {}: {e}", asset.display()));
    }
}

/// The files under `dir`, in its subdirectories too.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}
