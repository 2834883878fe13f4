//! Builds campeer's thin C layer over libvpx (csrc/vp8.c) for the target, and links libvpx as
//! pkg-config finds it: the system's own on the build machine, the target architecture's
//! (Debian multiarch `libvpx-dev:arm64` or `:armhf`, see .cargo/config.toml) when
//! cross-compiling.

fn main() {
    println!("cargo:rerun-if-changed=csrc/vp8.c");
    // Linked after the C layer (below): with --as-needed, a library named before the code
    // that uses it is dropped.
    let libvpx = match pkg_config::Config::new()
        .atleast_version("1.8")
        .cargo_metadata(false)
        .probe("vpx")
    {
        Ok(library) => library,
        Err(e) => {
            // The one thing a fresh machine is likely to miss: say how to get it.
            eprintln!(
                "campeer needs libvpx's headers for VP8 (Debian: apt-get install libvpx-dev, \
                 and libvpx-dev:arm64 or libvpx-dev:armhf to cross-compile): {e}"
            );
            std::process::exit(1);
        }
    };
    let mut build = cc::Build::new();
    build.file("csrc/vp8.c").warnings(true).extra_warnings(true);
    for dir in &libvpx.include_paths {
        build.include(dir);
    }
    build.compile("campeer_vp8");
    for dir in &libvpx.link_paths {
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
    for library in &libvpx.libs {
        println!("cargo:rustc-link-lib={library}");
    }
}
