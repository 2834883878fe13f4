use anyhow::Context;
use campeer::config::{Config, FileConfig, Overrides};
use clap::{CommandFactory, FromArgMatches, Parser};
use std::path::PathBuf;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Live camera video to any browser: answers WebRTC offers that viewers send over MQTT and
/// streams H.264 from one encoder to every viewer.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file. Flags and CAMPEER_* environment variables override it.
    #[arg(long, env = "CAMPEER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log filter: a level, then target=level pairs, e.g. "info" or "info,campeer=debug".
    #[arg(
        long,
        env = "CAMPEER_LOG",
        default_value = "info,rumqttd=warn,webrtc=warn,rtc=warn,rtc_ice=error,rtc_dtls=error"
    )]
    log: String,
    #[command(flatten)]
    overrides: Overrides,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// List cameras with their formats, sizes and frame rates, and ALSA capture devices,
    /// then exit.
    Devices {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Cameras to describe (default: every /dev/video*).
        paths: Vec<PathBuf>,
    },
}

/// Threads tokio may start for blocking work (file reads, closing devices). Its default of
/// 512 would run into the service's `TasksMax`; campeer never needs more than a few at once.
const MAX_BLOCKING_THREADS: usize = 32;

/// Blocks at least this big get pages of their own from the kernel, which go back when the
/// block is freed. glibc's default is the same size, but glibc raises it each time such a block
/// is freed, up to 32 MB: after the first encoder stops, the next one's buffers (openh264
/// zeroes 6.3 MB it never uses, for a downscaler campeer does not need) come from the heap,
/// are touched, and stay resident after it stops. Fixing the threshold turns that off: after
/// a dozen viewers came and went, the idle daemon held 15.6 MB instead of 26.7 MB.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_BYTES: libc::c_int = 128 * 1024;

/// Sets malloc's fixed threshold (see [`MMAP_THRESHOLD_BYTES`]); false if glibc refused.
/// Called before the runtime starts any thread, as mallopt wants.
fn fix_mmap_threshold() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt changes only malloc's tuning, and no other thread exists yet.
    return unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) } == 1;
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    true
}

fn main() -> anyhow::Result<()> {
    let mmap_threshold_fixed = fix_mmap_threshold();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(mmap_threshold_fixed))
}

async fn run(mmap_threshold_fixed: bool) -> anyhow::Result<()> {
    // Each setting's --help line shows its default, read from the configuration schema.
    let command = campeer::config::reference::with_defaults_in_help(Cli::command());
    let cli = Cli::from_arg_matches_mut(&mut command.get_matches()).unwrap_or_else(|e| e.exit());
    if let Some(Command::Devices { json, paths }) = &cli.command {
        let rpicam_vid = match (&cli.overrides.rpicam_vid, &cli.config) {
            (Some(program), _) => Some(program.clone()),
            (None, Some(path)) => FileConfig::load(path)?.rpicam_vid(),
            (None, None) => None,
        };
        return list_devices(*json, paths, rpicam_vid.as_deref());
    }
    // `target=level` directives, which is all --log takes: EnvFilter's span and field
    // directives would cost the boards' binary 65 KB.
    let filter: Targets = cli
        .log
        .parse()
        .with_context(|| format!("bad --log filter {:?}", cli.log))?;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_target(false))
        .with(filter)
        .init();
    if !mmap_threshold_fixed {
        tracing::warn!(
            "malloc refused a fixed mmap threshold: memory freed by stopped encoders may stay resident"
        );
    }
    let file = match &cli.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let config = Config::resolve(file, cli.overrides)?;
    let listeners = campeer::device::Listeners::bind(&config).await?;
    let signal = shutdown_signal()?;
    campeer::device::run(config, listeners, async {
        let signal = signal.await;
        tracing::info!("received {signal}");
    })
    .await
}

fn list_devices(
    json: bool,
    paths: &[PathBuf],
    rpicam_vid: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use campeer::media::{camera, microphone, rpicam};
    let paths = if paths.is_empty() {
        camera::device_paths()
    } else {
        paths.to_vec()
    };
    let cameras: Vec<_> = paths.iter().map(|p| camera::describe_device(p)).collect();
    let microphones = microphone::capture_devices();
    let program = rpicam::find_program(rpicam_vid);
    let modules = match &program {
        Some(program) => rpicam::list_camera_modules(program).map_err(|e| e.to_string()),
        None => Ok(Vec::new()),
    };
    let encoder = campeer::media::v4l2m2m::find_encoder();
    let text = if json {
        let listing = serde_json::json!({
            "hardware_encoder": encoder.as_ref().map(|path| path.display().to_string()),
            "camera_modules": modules.as_ref().ok(),
            "camera_modules_error": modules.as_ref().err(),
            "cameras": cameras,
            "microphones": microphones,
        });
        serde_json::to_string_pretty(&listing)? + "\n"
    } else {
        let encoder = match &encoder {
            Some(path) => format!(
                "Hardware H.264 encoder: {} (video.encoder = \"auto\" uses it)\n",
                path.display()
            ),
            None => "Hardware H.264 encoder: none (campeer encodes with openh264)\n".to_owned(),
        };
        format!(
            "{}\n{}\n{}\n{}",
            rpicam::format_camera_modules(program.as_deref(), &modules),
            camera::format_devices(&cameras),
            encoder,
            microphone::format_capture_devices(&microphones)
        )
    };
    // A reader that stops early (`campeer devices | head`) is not an error.
    match std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// The first SIGTERM or SIGINT, watched from now on: a signal that cannot be watched fails
/// the start rather than stopping campeer later.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        }
    })
}
