//! Running a capture pipeline only while someone watches, and keeping it alive through device
//! failures. Video and audio share this: each pipeline is a thread that starts with the first
//! subscriber and stops a grace period after the last one leaves (a viewer who reloads the
//! page does not pay for reopening the camera or the microphone), and a source that fails is
//! reopened with backoff while viewers stay connected.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Reopening a failed source: first retry, and the longest wait between retries.
const REOPEN_FIRST: Duration = Duration::from_secs(1);
const REOPEN_MAX: Duration = Duration::from_secs(10);
/// A source that served this long before failing was working: its next reopen is prompt.
const HEALTHY_RUN: Duration = Duration::from_secs(5);

/// What a source is doing, for the status topic. `L` is what a live source reports (the
/// video size actually streamed, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState<L = ()> {
    /// Nobody watches; the source is closed.
    Idle,
    /// Opening the source, or waiting for its first output.
    Starting,
    Live(L),
    /// The source failed (a camera unplugged, a microphone missing); campeer keeps retrying.
    Failed(String),
}

impl<L> SourceState<L> {
    pub fn name(&self) -> &'static str {
        match self {
            SourceState::Idle => "idle",
            SourceState::Starting => "starting",
            SourceState::Live(_) => "live",
            SourceState::Failed(_) => "failed",
        }
    }
}

/// Publishes a source's state, notifying watchers only of real changes (a live source reports
/// itself on every frame).
pub struct StateReporter<L> {
    sender: tokio::sync::watch::Sender<SourceState<L>>,
}

impl<L: PartialEq> StateReporter<L> {
    pub fn new() -> Self {
        Self {
            sender: tokio::sync::watch::channel(SourceState::Idle).0,
        }
    }

    pub fn set(&self, state: SourceState<L>) {
        self.sender.send_if_modified(|current| {
            let changed = *current != state;
            *current = state;
            changed
        });
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<SourceState<L>> {
        self.sender.subscribe()
    }
}

impl<L: PartialEq> Default for StateReporter<L> {
    fn default() -> Self {
        Self::new()
    }
}

/// Locks a mutex, recovering the data if a thread panicked while holding it: the state kept
/// behind these locks stays consistent between statements, and refusing to serve would be
/// worse.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// When a loop last went round, readable from any thread: what the systemd watchdog checks, so
/// that a loop stuck in a driver call or a deadlock stops the pings and gets campeer restarted.
#[derive(Debug)]
pub struct Heartbeat {
    epoch: Instant,
    /// Milliseconds since `epoch` at the last beat.
    last: AtomicU64,
}

impl Heartbeat {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    pub fn beat(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    /// How long ago the last beat was (since creation, before the first).
    pub fn age(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

/// What a pipeline thread is given: the request to stop, and the heartbeat it proves itself
/// alive with each time it asks whether to go on.
#[derive(Debug, Default)]
pub struct RunFlag {
    stop: AtomicBool,
    heartbeat: Heartbeat,
}

impl RunFlag {
    /// Whether to go round once more; every call is a heartbeat.
    pub fn keep_going(&self) -> bool {
        self.heartbeat.beat();
        !self.stop.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Sleeps up to `total`, waking early when asked to stop.
pub fn pause(total: Duration, run: &RunFlag) {
    let deadline = Instant::now() + total;
    while run.keep_going() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50).min(total));
    }
}

/// How long to wait before opening a failed source again: 1 s, doubling to 10 s while the
/// source keeps failing soon after it opens (a camera program that exits at once, a device
/// that opens but gives nothing), back to 1 s once it has served for a while. A plain state
/// machine: `supervise` carries its waits out.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: REOPEN_FIRST }
    }
}

impl Backoff {
    /// The wait after a failure; `served` is how long the source ran since it opened (`None`
    /// when it did not open).
    pub fn after_failure(&mut self, served: Option<Duration>) -> Duration {
        if served.is_some_and(|served| served >= HEALTHY_RUN) {
            self.next = REOPEN_FIRST;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(REOPEN_MAX);
        wait
    }
}

/// Opens a source and serves from it until stopped, reopening it with backoff (see
/// [`Backoff`]) whenever opening or serving fails. `serve` returns `Ok` only when told to stop.
pub fn supervise<S, E: std::fmt::Display, L>(
    run: &RunFlag,
    what: &str,
    state: &StateReporter<L>,
    mut open: impl FnMut() -> Result<S, E>,
    mut serve: impl FnMut(&mut S) -> Result<(), E>,
) where
    L: PartialEq,
{
    let mut backoff = Backoff::default();
    state.set(SourceState::Starting);
    while run.keep_going() {
        // A panic in a driver, a decoder or the encoder must not leave the video frozen while
        // the status still says live: it is caught here, reported as a failure, and the
        // source is opened again after the backoff, like any other failure.
        let opened = catch_unwind(AssertUnwindSafe(&mut open));
        let mut source = match opened {
            Ok(Ok(source)) => source,
            Ok(Err(e)) => {
                let wait = backoff.after_failure(None);
                state.set(SourceState::Failed(e.to_string()));
                tracing::warn!("cannot open the {what}: {e}; retrying in {wait:?}");
                pause(wait, run);
                continue;
            }
            Err(panic) => {
                let wait = backoff.after_failure(None);
                let reason = format!(
                    "opening the {what} panicked: {}",
                    panic_message(panic.as_ref())
                );
                tracing::error!("{reason}; retrying in {wait:?}");
                state.set(SourceState::Failed(reason));
                pause(wait, run);
                continue;
            }
        };
        let opened_at = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| serve(&mut source))) {
            Ok(Ok(())) => break,
            Ok(Err(e)) => {
                let wait = backoff.after_failure(Some(opened_at.elapsed()));
                state.set(SourceState::Failed(e.to_string()));
                tracing::warn!("the {what} failed: {e}; reopening in {wait:?}");
                drop(source);
                pause(wait, run);
            }
            Err(panic) => {
                // A pipeline that panics again right after reopening backs off further each
                // time, rather than crash-looping at the first pace.
                let wait = backoff.after_failure(Some(opened_at.elapsed()));
                let reason = format!(
                    "the {what} pipeline panicked: {}",
                    panic_message(panic.as_ref())
                );
                tracing::error!("{reason}; restarting it in {wait:?}");
                state.set(SourceState::Failed(reason));
                // The source may be in any state after a panic; dropping it closes the device.
                drop(catch_unwind(AssertUnwindSafe(move || drop(source))));
                pause(wait, run);
            }
        }
    }
    state.set(SourceState::Idle);
}

/// The text a panic was raised with, when it has one.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

struct Pipeline {
    run: Arc<RunFlag>,
    thread: JoinHandle<()>,
}

impl Pipeline {
    fn is_running(&self) -> bool {
        !self.run.stopped() && !self.thread.is_finished()
    }

    /// Stops the thread and waits for it (at most about one frame period), so that the next
    /// pipeline never finds the device still held by this one.
    fn stop_and_join(self) {
        self.run.stop();
        if self.thread.join().is_err() {
            tracing::error!("a media pipeline thread panicked");
        }
    }
}

#[derive(Default)]
struct DemandState {
    subscribers: usize,
    pipeline: Option<Pipeline>,
    /// A pipeline told to stop whose thread may still be finishing its last frame.
    stopping: Option<Pipeline>,
    /// Bumped on every acquire and release, so a pending idle stop can tell that somebody
    /// came back during the grace period.
    generation: u64,
}

type PipelineBody = Arc<dyn Fn(&RunFlag) + Send + Sync>;

struct DemandInner {
    thread_name: &'static str,
    grace: Duration,
    body: PipelineBody,
    state: Mutex<DemandState>,
    starts: AtomicU64,
}

/// Runs `body` on a thread of its own while at least one subscriber holds it. The body runs
/// until the flag it is given says stop. Cheap to clone; clones share the pipeline.
#[derive(Clone)]
pub struct OnDemand {
    inner: Arc<DemandInner>,
}

impl OnDemand {
    pub fn new(
        thread_name: &'static str,
        grace: Duration,
        body: impl Fn(&RunFlag) + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner: Arc::new(DemandInner {
                thread_name,
                grace,
                body: Arc::new(body),
                state: Mutex::new(DemandState::default()),
                starts: AtomicU64::new(0),
            }),
        }
    }

    /// One more subscriber: starts the pipeline unless it runs.
    pub fn acquire(&self) {
        let mut state = lock(&self.inner.state);
        state.subscribers += 1;
        state.generation += 1;
        let running = state.pipeline.as_ref().is_some_and(Pipeline::is_running);
        if !running {
            for old in [state.pipeline.take(), state.stopping.take()]
                .into_iter()
                .flatten()
            {
                old.stop_and_join();
            }
            state.pipeline = Some(self.start());
        }
    }

    /// One subscriber fewer: after the grace period without any, the pipeline stops.
    pub fn release(&self) {
        let generation = {
            let mut state = lock(&self.inner.state);
            state.subscribers = state.subscribers.saturating_sub(1);
            state.generation += 1;
            if state.subscribers > 0 {
                return;
            }
            state.generation
        };
        let demand = self.clone();
        let stop_if_still_idle = move || demand.stop_if_idle_since(generation);
        let grace = self.inner.grace;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    tokio::time::sleep(grace).await;
                    stop_if_still_idle();
                });
            }
            Err(_) => stop_if_still_idle(),
        }
    }

    fn stop_if_idle_since(&self, generation: u64) {
        let mut state = lock(&self.inner.state);
        if state.subscribers > 0 || state.generation != generation {
            return;
        }
        if let Some(pipeline) = state.pipeline.take() {
            tracing::info!(
                "no viewers for {:?}: stopping the {} pipeline",
                self.inner.grace,
                self.inner.thread_name
            );
            // The thread notices within one frame; whoever starts the next pipeline joins it.
            pipeline.run.stop();
            if let Some(older) = state.stopping.replace(pipeline) {
                drop(state);
                older.stop_and_join();
            }
        }
    }

    /// Stops the pipeline now, whoever is subscribed (daemon shutdown).
    pub fn shutdown(&self) {
        let (pipeline, stopping) = {
            let mut state = lock(&self.inner.state);
            (state.pipeline.take(), state.stopping.take())
        };
        for old in [pipeline, stopping].into_iter().flatten() {
            old.stop_and_join();
        }
    }

    pub fn is_running(&self) -> bool {
        lock(&self.inner.state)
            .pipeline
            .as_ref()
            .is_some_and(Pipeline::is_running)
    }

    /// Whether the running pipeline has not gone round its loop for `max_age`: stuck in a
    /// driver call, say. An idle pipeline is never stalled.
    pub fn is_stalled(&self, max_age: Duration) -> bool {
        lock(&self.inner.state)
            .pipeline
            .as_ref()
            .is_some_and(|p| p.is_running() && p.run.heartbeat.age() > max_age)
    }

    pub fn subscribers(&self) -> usize {
        lock(&self.inner.state).subscribers
    }

    /// How many times a pipeline thread was started.
    pub fn starts(&self) -> u64 {
        self.inner.starts.load(Ordering::Relaxed)
    }

    fn start(&self) -> Pipeline {
        self.inner.starts.fetch_add(1, Ordering::Relaxed);
        let run = Arc::new(RunFlag::default());
        run.heartbeat.beat();
        let body = Arc::clone(&self.inner.body);
        let thread_run = Arc::clone(&run);
        let thread = std::thread::Builder::new()
            .name(format!("campeer-{}", self.inner.thread_name))
            .spawn(move || body(&thread_run))
            .unwrap_or_else(|e| {
                tracing::error!("cannot start the {} thread: {e}", self.inner.thread_name);
                // A finished thread reads as "not running"; the next subscriber retries.
                std::thread::spawn(|| {})
            });
        Pipeline { run, thread }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn counting(grace: Duration) -> (OnDemand, Arc<AtomicUsize>) {
        let ticks = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&ticks);
        let demand = OnDemand::new("test", grace, move |run| {
            while run.keep_going() {
                counter.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        (demand, ticks)
    }

    #[test]
    fn without_a_runtime_release_stops_at_once_and_acquire_restarts() {
        let (demand, ticks) = counting(Duration::from_secs(60));
        demand.acquire();
        demand.acquire();
        assert!(demand.is_running());
        assert_eq!(demand.subscribers(), 2);
        demand.release();
        assert!(demand.is_running(), "one subscriber left");
        demand.release();
        assert!(!demand.is_running());
        let before = ticks.load(Ordering::Relaxed);
        demand.acquire();
        assert_eq!(demand.starts(), 2);
        demand.shutdown();
        assert!(ticks.load(Ordering::Relaxed) >= before);
        assert!(!demand.is_running());
    }

    #[test]
    fn a_pipeline_that_stops_going_round_is_stalled() {
        let stuck = Arc::new(AtomicBool::new(false));
        let stuck_in_body = Arc::clone(&stuck);
        let demand = OnDemand::new("test", Duration::ZERO, move |run| {
            while run.keep_going() {
                // Stuck as in a driver call that never returns, until released.
                while stuck_in_body.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        assert!(!demand.is_stalled(Duration::ZERO), "idle is never stalled");
        demand.acquire();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!demand.is_stalled(Duration::from_millis(30)));
        stuck.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
        assert!(demand.is_stalled(Duration::from_millis(50)));
        stuck.store(false, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!demand.is_stalled(Duration::from_millis(30)));
        demand.shutdown();
    }

    #[test]
    fn a_panicking_pipeline_is_reported_failed_and_restarted() {
        let run = RunFlag::default();
        let state = StateReporter::<()>::new();
        let mut watcher = state.subscribe();
        let mut opens = 0;
        let mut serves = 0;
        let mut seen_on_restart = None;
        supervise(
            &run,
            "test source",
            &state,
            || {
                opens += 1;
                Ok::<_, &str>(())
            },
            |_| {
                serves += 1;
                if serves == 1 {
                    panic!("an encoder bug");
                }
                seen_on_restart = Some(watcher.borrow_and_update().clone());
                run.stop();
                Ok(())
            },
        );
        assert_eq!((opens, serves), (2, 2), "opened again after the panic");
        assert_eq!(
            seen_on_restart,
            Some(SourceState::Failed(
                "the test source pipeline panicked: an encoder bug".into()
            )),
            "reported failed until it runs again"
        );
    }

    #[test]
    fn backoff_grows_while_a_source_fails_soon_after_opening() {
        let mut backoff = Backoff::default();
        let secs = Duration::from_secs;
        // Cannot open: 1, 2, 4, 8, 10, 10 s.
        let waits: Vec<_> = (0..6).map(|_| backoff.after_failure(None)).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10].map(secs));
        // Opens, then fails within a second each time (a camera program that exits at once):
        // still growing, not back to 1 s each time.
        let mut backoff = Backoff::default();
        let waits: Vec<_> = (0..5)
            .map(|_| backoff.after_failure(Some(Duration::from_millis(300))))
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 10].map(secs));
        // Served for a minute before failing: prompt again.
        assert_eq!(backoff.after_failure(Some(secs(60))), secs(1));
        assert_eq!(backoff.after_failure(None), secs(2));
    }

    #[test]
    fn supervise_reopens_with_backoff_and_reports_failure() {
        let run = RunFlag::default();
        let state = StateReporter::<()>::new();
        let mut watcher = state.subscribe();
        let mut opens = 0;
        let started = Instant::now();
        supervise(
            &run,
            "test source",
            &state,
            || {
                opens += 1;
                if opens == 1 {
                    Err("not there yet")
                } else {
                    Ok(())
                }
            },
            |_| {
                assert_eq!(
                    *watcher.borrow_and_update(),
                    SourceState::Failed("not there yet".into())
                );
                run.stop();
                Ok(())
            },
        );
        assert_eq!(opens, 2);
        assert!(started.elapsed() >= REOPEN_FIRST, "waited before retrying");
        assert_eq!(*state.subscribe().borrow(), SourceState::Idle);
    }
}
