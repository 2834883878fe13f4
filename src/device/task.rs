//! One camera's device task: feeds what arrives (viewers' messages, WHEP requests, its
//! sessions' ends, the broker connection and the sources' states) to that camera's signaling
//! core, and carries out what it decides: start, feed and stop sessions, reply, publish the
//! status and the stats. WHEP's part is in [`whep`].

mod motion;
mod recording;
mod whep;

use super::{INBOUND_QUEUE, SHUTDOWN_WAIT, SummaryBoard};
use crate::protocol::RecordReport;
use crate::record::task::RecordingHandle;
use motion::MotionWatch;
use whep::{WHEP_RESTARTS_QUEUE, WhepRestarted};

use crate::config::{Config, VideoConfig};
use crate::media::audio_hub::AudioHub;
use crate::media::hub::{SourceState, VideoHub};
use crate::media::worker;
use crate::media::worker::Heartbeat;
use crate::metrics::{DeviceFigures, SessionEnds, ViewerFigures};
use crate::mqtt::{Inbound, Publisher};
use crate::outbox::Outbox;
use crate::protocol::{
    AudioDescription, DeviceMessage, ErrorCode, OFFLINE_STATUS, PublicationReport, Segment, Status,
    VideoDescription,
};
use crate::publish::schedule::PublicationStatus;
use crate::session::{self, SessionContext, SessionHandle};
use crate::signaling::sessions::{SessionCommand, SessionEvent, SessionReport};
use crate::signaling::{Action, Limits, Signaling};
use crate::web::whep_ice::WhepIceBook;
use crate::web::whep_server::WhepCommand;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The device loop goes round at least this often, so its heartbeat shows it is alive: well
/// inside half of any sensible systemd watchdog time (a second or more), at no real cost.
const HEARTBEAT_PERIOD: Duration = Duration::from_millis(200);
/// How often the link figures of the viewers go out on the stats topic.
const STATS_PERIOD: Duration = Duration::from_secs(2);

/// What one camera's device task is made of.
pub(super) struct DeviceParts<'a> {
    pub(super) config: &'a Config,
    /// The camera's place: 0 is the first.
    pub(super) index: usize,
    pub(super) publisher: Publisher,
    pub(super) hub: VideoHub,
    pub(super) audio: Option<AudioHub>,
    pub(super) ice: crate::config::IceConfig,
    pub(super) video: &'a VideoConfig,
    pub(super) board: Arc<SummaryBoard>,
    pub(super) tasks: Arc<crate::session::SessionTasks>,
    /// Where this camera's figures go for /metrics.
    pub(super) figures: watch::Sender<DeviceFigures>,
    /// This camera's publications into SFUs, for its status.
    pub(super) publications: Vec<watch::Receiver<PublicationStatus>>,
}

impl DeviceParts<'_> {
    /// The device, and the receiver of its sessions' reports.
    pub(super) fn build(self) -> (Device, mpsc::UnboundedReceiver<SessionReport>) {
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let sessions = &self.config.sessions;
        let outbox = Outbox::new(self.publisher.clone());
        let context = SessionContext {
            hub: self.hub.clone(),
            audio: self.audio.clone(),
            ice: self.ice,
            timeout: sessions.timeout(),
            connect_timeout: sessions.connect_timeout(),
            outbox: outbox.clone(),
            reports: reports_tx,
            tasks: self.tasks,
        };
        let recording = recording::start(
            &self.config.record,
            &self.hub,
            self.audio.as_ref(),
            self.publisher.topics().device(),
        );
        let device = Device {
            publisher: self.publisher,
            outbox,
            whep_ice: WhepIceBook::default(),
            whep_restarts: mpsc::channel(WHEP_RESTARTS_QUEUE),
            via: (self.index > 0).then(|| self.config.device_id.clone()),
            video: VideoDescription {
                codec: "H264".into(),
                codecs: self
                    .hub
                    .codecs()
                    .iter()
                    .map(|codec| codec.sdp_name().to_owned())
                    .collect(),
                sending: Vec::new(),
                width: self.video.width,
                height: self.video.height,
                fps: self.video.fps,
                state: None,
                error: None,
                encoder: None,
            },
            source_state: self.hub.source_state(),
            audio_state: self.audio.as_ref().map(AudioHub::source_state),
            signaling: Signaling::new(
                Limits::new(sessions.max_viewers, sessions.timeout()),
                self.audio.is_some(),
            )
            .with_video_codecs(self.hub.codecs()),
            sessions: HashMap::new(),
            context,
            board: self.board,
            index: self.index,
            heartbeat: Arc::new(Heartbeat::new()),
            figures: self.figures,
            sessions_ended: SessionEnds::default(),
            figures_stale: false,
            publications: self.publications,
            motion: if self.config.motion.enabled {
                MotionWatch::start(&self.hub, &self.config.motion)
            } else {
                None
            },
            recording,
            record_headline: None,
        };
        (device, reports)
    }
}

/// Waits for the next change of any publication's course; never resolves without one.
async fn publication_changed(publications: &mut [watch::Receiver<PublicationStatus>]) {
    let mut changes: Vec<_> = publications
        .iter_mut()
        .map(|publication| Box::pin(publication.changed()))
        .collect();
    let changed = std::future::poll_fn(|cx| {
        for change in &mut changes {
            if let std::task::Poll::Ready(result) = change.as_mut().poll(cx) {
                return std::task::Poll::Ready(result.is_ok());
            }
        }
        std::task::Poll::Pending
    })
    .await;
    if !changed {
        // The publication's task is gone (shutdown): nothing more to tell.
        std::future::pending::<()>().await;
    }
}

/// Waits for the next change of an optional source state; never resolves without one.
async fn state_changed<L>(
    state: &mut Option<tokio::sync::watch::Receiver<worker::SourceState<L>>>,
) {
    let alive = match state {
        Some(state) => state.changed().await.is_ok(),
        None => false,
    };
    if !alive {
        std::future::pending::<()>().await;
    }
}

pub(super) struct Device {
    publisher: Publisher,
    /// Replies to viewers: on MQTT, or to the WHEP request waiting for its answer.
    outbox: Outbox,
    /// Each WHEP session's offer and ICE state, and the decisions made from it. Whether the
    /// session exists is the signaling core's to say; this only adds what WHEP needs.
    whep_ice: WhepIceBook,
    /// Restarts answered by their sessions, to commit before the player is told.
    whep_restarts: (mpsc::Sender<WhepRestarted>, mpsc::Receiver<WhepRestarted>),
    /// For a camera besides the first: the device whose status carries the connection's last
    /// will, so that viewers know this one is gone when that one is.
    via: Option<Segment>,
    video: VideoDescription,
    source_state: tokio::sync::watch::Receiver<SourceState>,
    audio_state: Option<tokio::sync::watch::Receiver<worker::SourceState>>,
    signaling: Signaling,
    sessions: HashMap<Segment, SessionHandle>,
    context: SessionContext,
    board: Arc<SummaryBoard>,
    /// This camera's place on the board.
    index: usize,
    pub(super) heartbeat: Arc<Heartbeat>,
    figures: watch::Sender<DeviceFigures>,
    /// Sessions ended so far, by reason; only this task counts them.
    sessions_ended: SessionEnds,
    /// A viewer came or went since the figures were last refreshed.
    figures_stale: bool,
    /// This camera's publications into SFUs.
    publications: Vec<watch::Receiver<PublicationStatus>>,
    /// Motion detection, when it is on.
    motion: Option<MotionWatch>,
    /// Recording, when it is on.
    recording: Option<RecordingHandle>,
    /// What the status last said of the recording.
    record_headline: Option<RecordReport>,
}

impl Device {
    pub(super) async fn run(
        mut self,
        mut connection: watch::Receiver<crate::mqtt::Connection>,
        mut inbound: mpsc::Receiver<Inbound>,
        mut reports: mpsc::UnboundedReceiver<SessionReport>,
        mut whep: mpsc::Receiver<WhepCommand>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut heartbeat = tokio::time::interval(HEARTBEAT_PERIOD);
        let mut stats = tokio::time::interval(STATS_PERIOD);
        let mut figures = tokio::time::interval(crate::metrics::REFRESH_PERIOD);
        let mut connects = 0;
        loop {
            self.heartbeat.beat();
            let wake = self.signaling.poll_timeout();
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => break,
                changed = connection.changed() => {
                    if changed.is_err() {
                        tracing::error!("the MQTT driver stopped unexpectedly");
                        break;
                    }
                    let connection = *connection.borrow_and_update();
                    self.board.set_broker_connected(connection.connected);
                    // Connection changes are a state, not a queue: a reconnect is never missed
                    // however busy the inbound queue is.
                    if connection.connected && connection.connects != connects {
                        connects = connection.connects;
                        self.signaling.broker_connected(Instant::now());
                        if let Some(motion) = &self.motion {
                            motion.republish(&self.publisher);
                        }
                    } else if !connection.connected {
                        self.signaling.broker_lost();
                    }
                }
                message = inbound.recv() => match message {
                    Some(Inbound { topic, payload }) => {
                        self.on_inbound(&topic, &payload);
                        // Everything already queued goes to the signaling core before any
                        // of it is carried out: an offer whose hangup waits behind it is
                        // never started.
                        for _ in 1..INBOUND_QUEUE {
                            let Ok(Inbound { topic, payload }) = inbound.try_recv() else {
                                break;
                            };
                            self.on_inbound(&topic, &payload);
                        }
                    }
                    None => {
                        tracing::error!("the MQTT driver stopped unexpectedly");
                        break;
                    }
                },
                Some(command) = whep.recv() => self.on_whep(command),
                Some(done) = self.whep_restarts.1.recv() => self.on_whep_restarted(done),
                Some(report) = reports.recv() => self.on_session_report(report),
                news = MotionWatch::next(&mut self.motion) => {
                    if let Some(recording) = &self.recording {
                        recording.motion(recording::mark(&news));
                    }
                    if let Some(motion) = &mut self.motion {
                        motion.on_news(news, &self.publisher);
                    }
                    self.signaling.status_changed(Instant::now());
                    self.figures_stale = true;
                }
                Ok(()) = self.source_state.changed() => self.signaling.status_changed(Instant::now()),
                () = state_changed(&mut self.audio_state) => self.signaling.status_changed(Instant::now()),
                () = publication_changed(&mut self.publications) => self.signaling.status_changed(Instant::now()),
                () = sleep_until(wake) => {}
                _ = heartbeat.tick() => {
                    let headline = self.recording.as_ref().map(recording::report);
                    if headline != self.record_headline {
                        self.record_headline = headline;
                        self.signaling.status_changed(Instant::now());
                    }
                }
                _ = stats.tick() => self.publish_stats(),
                _ = figures.tick() => self.figures_stale = true,
            }
            self.signaling.handle_timeout(Instant::now());
            self.carry_out();
            if std::mem::take(&mut self.figures_stale) {
                self.refresh_figures();
            }
            // The service manager and tests see the count at once; the status topic may lag
            // it by the coalescing interval.
            self.board.set_viewers(self.index, self.signaling.viewers());
        }
        self.shutdown(reports).await;
    }

    fn on_session_report(&mut self, report: SessionReport) {
        let SessionReport { id, serial, event } = report;
        let now = Instant::now();
        match event {
            SessionEvent::Answered => self.signaling.session_answered(now, &id, serial),
            SessionEvent::Connected => self.signaling.session_connected(&id, serial),
            SessionEvent::Ended(reason) => {
                self.sessions_ended.count(reason.name());
                self.figures_stale = true;
                self.signaling.session_ended(now, id, serial, &reason);
            }
        }
    }

    fn on_inbound(&mut self, topic: &str, payload: &[u8]) {
        match self.publisher.topics().session_of(topic) {
            Ok(session) => self
                .signaling
                .handle_message(Instant::now(), session, payload),
            Err(e) => tracing::debug!("ignoring a message on {topic:?}: {e}"),
        }
    }

    /// Does what the signaling core decided.
    fn carry_out(&mut self) {
        while let Some(action) = self.signaling.poll_action() {
            match action {
                Action::Reply { to, message } => {
                    if let Err(e) = self.outbox.send(&to, &message) {
                        tracing::warn!(session = %to, "could not reply: {e}");
                    }
                }
                Action::Start(start) => {
                    let handle = session::spawn(
                        self.context.clone(),
                        start.id.clone(),
                        start.serial,
                        start.choice,
                        start.offer,
                        start.early,
                    );
                    self.sessions.insert(start.id, handle);
                    self.figures_stale = true;
                }
                Action::Forward { to, command } => {
                    let offer = matches!(command, SessionCommand::Offer(_));
                    let delivered = self
                        .sessions
                        .get(&to)
                        .is_some_and(|handle| handle.send(command));
                    if delivered {
                        continue;
                    }
                    // Every offer gets a reply: one its session cannot take is refused here.
                    if offer {
                        tracing::info!(session = %to, "session busy or ending; refused a renegotiation");
                        let refusal = DeviceMessage::error(
                            ErrorCode::Busy,
                            "the session cannot take a new offer now; offer again",
                        );
                        if let Err(e) = self.outbox.send(&to, &refusal) {
                            tracing::warn!(session = %to, "could not reply: {e}");
                        }
                    } else {
                        tracing::debug!(session = %to, "session busy or gone; dropped a message");
                    }
                }
                Action::Stop { session } => {
                    self.whep_ice.on_ended(&session);
                    // Dropping the handle ends the task too; the hangup says why.
                    if let Some(handle) = self.sessions.remove(&session) {
                        handle.send(SessionCommand::Hangup);
                    }
                    self.figures_stale = true;
                }
                Action::Forget { session } => {
                    self.sessions.remove(&session);
                    self.figures_stale = true;
                    self.whep_ice.on_ended(&session);
                }
                Action::PublishStatus { viewers } => self.publish_status(viewers),
            }
        }
    }

    /// Each viewer's estimate, sent rate, round trip and loss, and the encoder's target, while
    /// anyone watches.
    fn publish_stats(&mut self) {
        if self.sessions.is_empty() && self.publications.is_empty() {
            return;
        }
        let now = Instant::now();
        let viewers: Vec<_> = self
            .sessions
            .iter_mut()
            .map(|(id, handle)| {
                let state = handle.link.snapshot();
                handle.sampler.sample(now, id.as_str(), &state)
            })
            .collect();
        let message = serde_json::json!({
            "encoder_kbps": self.context.hub.stats().target_bitrate_bps / 1000,
            "viewers": viewers,
            "publications": self.publication_reports(),
            "motion": self.motion.as_ref().map(MotionWatch::report),
            "record": self.record_headline,
        });
        if let Err(e) = self.publisher.stats(message.to_string()) {
            tracing::debug!("stats not published: {e}");
        }
    }

    /// Replaces the figures /metrics reads with what this camera, its microphone and its
    /// viewers show now.
    fn refresh_figures(&self) {
        let hub = &self.context.hub;
        let viewers = self
            .sessions
            .iter()
            .map(|(id, handle)| ViewerFigures {
                session: id.to_string(),
                link: handle.link.snapshot(),
            })
            .collect();
        let audio = self
            .context
            .audio
            .as_ref()
            .zip(self.audio_state.as_ref())
            .map(|(hub, state)| (state.borrow().name(), hub.stats()));
        let source = self.source_state.borrow().name();
        self.figures.send_modify(|figures| {
            figures.source = source;
            figures.video = hub.stats();
            figures.streams = hub
                .codecs()
                .iter()
                .map(|&codec| (codec, hub.stream_stats(codec)))
                .collect();
            figures.audio = audio;
            figures.viewer_count = self.signaling.viewers();
            figures.viewers = viewers;
            figures.sessions_ended = self.sessions_ended.clone();
            figures.motion = self
                .motion
                .as_ref()
                .map(|motion| (motion.is_moving(), motion.events()));
        });
    }

    /// Each publication's course, as the status and stats topics tell it.
    fn publication_reports(&self) -> Vec<PublicationReport> {
        self.publications
            .iter()
            .map(|publication| {
                let publication = publication.borrow();
                PublicationReport {
                    url: publication.url.clone(),
                    state: publication.state.name().to_owned(),
                    attempts: publication.attempts,
                    error: publication.last_error.clone(),
                }
            })
            .collect()
    }

    fn publish_status(&self, viewers: usize) {
        let mut video = self.video.clone();
        let source = self.source_state.borrow().clone();
        video.state = Some(source.name().to_owned());
        match source {
            SourceState::Failed(reason) => video.error = Some(reason),
            SourceState::Live(live) => {
                (video.width, video.height) = (live.size.width, live.size.height);
                video.encoder = live.encoder.name().map(str::to_owned);
                video.sending = live.codecs_sent().into_iter().map(str::to_owned).collect();
            }
            SourceState::Idle | SourceState::Starting => {}
        }
        let audio = self
            .context
            .audio
            .as_ref()
            .zip(self.audio_state.as_ref())
            .map(|(hub, state)| {
                let state = state.borrow().clone();
                AudioDescription {
                    codec: "opus".into(),
                    sample_rate: crate::media::audio::SAMPLE_RATE,
                    channels: hub.settings().channels,
                    state: Some(state.name().to_owned()),
                    error: match state {
                        worker::SourceState::Failed(reason) => Some(reason),
                        _ => None,
                    },
                }
            });
        let mut status = Status::online(video, audio, viewers);
        status.via = self.via.as_ref().map(|via| via.to_string());
        status.publications = self.publication_reports();
        status.motion = self.motion.as_ref().map(MotionWatch::report);
        status.record = self.record_headline.clone();
        if let Err(e) = self.publisher.status(status.to_json()) {
            tracing::warn!("could not publish the status: {e}");
        }
    }

    async fn shutdown(mut self, mut reports: mpsc::UnboundedReceiver<SessionReport>) {
        tracing::info!(
            "shutting down: hanging up on {} viewer(s)",
            self.signaling.viewers()
        );
        let mut remaining = self.signaling.shutdown();
        self.carry_out();
        // Dropping the handles ends each session task, which closes its peer connection.
        self.sessions.clear();
        self.board.set_viewers(self.index, 0);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
        while remaining > 0 {
            match tokio::time::timeout_at(deadline, reports.recv()).await {
                Ok(Some(SessionReport {
                    event: SessionEvent::Ended(_),
                    ..
                })) => remaining -= 1,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        if let Some(recording) = self.recording.take() {
            recording.stop(SHUTDOWN_WAIT).await;
        }
        self.context.hub.shutdown();
        if let Some(audio) = &self.context.audio {
            audio.shutdown();
        }
        if let Err(e) = self.publisher.status(OFFLINE_STATUS.to_owned()) {
            tracing::warn!("could not queue the offline status: {e}");
        }
    }
}

/// Sleeps until `deadline`; never wakes without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
