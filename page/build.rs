//! Compresses the viewer page's files (assets/) with gzip into OUT_DIR, where the crate's
//! `ASSETS` takes them from: the binary carries 115 KB instead of 370 KB (mqtt.js alone is
//! 342 KB), and a page load over a Pi's Wi-Fi moves a third of the bytes. Each file is one
//! gzip member with the plain 10-byte header (no name, no extra fields: checked here), which
//! lets the daemon inflate it for a rare client without gzip by skipping header and trailer.

use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::Path;

/// Every file the page serves, relative to assets/.
const ASSETS: &[&str] = &[
    "index.html",
    "app.js",
    "style.css",
    "vendor/mqtt.esm.js",
    "vendor/mqtt.LICENSE.md",
];

fn main() {
    let out_dir = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts");
    for asset in ASSETS {
        let source = Path::new("assets").join(asset);
        println!("cargo:rerun-if-changed={}", source.display());
        let text = std::fs::read(&source)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", source.display()));
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder
            .write_all(&text)
            .and_then(|()| encoder.finish())
            .and_then(|gz| {
                // FLG = 0: nothing between the 10-byte header and the deflate stream.
                assert_eq!(gz.get(3), Some(&0), "a gzip header with optional fields");
                let target = Path::new(&out_dir).join(format!("{asset}.gz"));
                if let Some(dir) = target.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(target, gz)
            })
            .unwrap_or_else(|e| panic!("cannot compress {}: {e}", source.display()));
    }
}
