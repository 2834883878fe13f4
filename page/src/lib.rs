//! The viewer page campeer serves: its HTML, script, style sheet and vendored MQTT.js, built
//! into the binary gzip-compressed (build.rs), so the device needs no internet and no CDN. A
//! crate of its own because its build script must not be built with the fuzzers'
//! instrumentation, which campeer's own code gets.

/// A file of the page, compressed with gzip when campeer was built (build.rs).
pub struct Asset {
    /// Where the page's server answers with it.
    pub path: &'static str,
    /// Its source, relative to the crate's assets/.
    pub file: &'static str,
    pub content_type: &'static str,
    /// One gzip member, as build.rs wrote it.
    pub gzip: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $content_type:literal) => {
        Asset {
            path: $path,
            file: $file,
            content_type: $content_type,
            gzip: include_bytes!(concat!(env!("OUT_DIR"), "/", $file, ".gz")),
        }
    };
}

/// Every file of the page.
pub const ASSETS: &[Asset] = &[
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!("/app.js", "app.js", "text/javascript; charset=utf-8"),
    asset!("/camera.js", "camera.js", "text/javascript; charset=utf-8"),
    asset!("/style.css", "style.css", "text/css; charset=utf-8"),
    asset!(
        "/vendor/mqtt.esm.js",
        "vendor/mqtt.esm.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "/vendor/mqtt.LICENSE.md",
        "vendor/mqtt.LICENSE.md",
        "text/plain; charset=utf-8"
    ),
];

/// A gzip member's fixed header, as build.rs writes it (no optional fields), and its trailer
/// (CRC-32 and length).
const GZIP_HEADER_LEN: usize = 10;
const GZIP_TRAILER_LEN: usize = 8;

impl Asset {
    /// The plain file, for a client that takes no gzip (rare: every browser does). The deflate
    /// stream alone is inflated: the CRC's code would cost the binary more than it checks in a
    /// file built into it (the unit tests compare every file with its source).
    pub fn plain(&self) -> Result<Vec<u8>, String> {
        let deflate = self
            .gzip
            .get(GZIP_HEADER_LEN..self.gzip.len().saturating_sub(GZIP_TRAILER_LEN))
            .ok_or("shorter than a gzip header")?;
        miniz_oxide::inflate::decompress_to_vec(deflate).map_err(|e| e.to_string())
    }
}
