//! Where a device's messages to a viewer go. An MQTT viewer gets every one on its outbound
//! topic. A WHEP viewer has no topic: what it can be given, the answer to its offer (or to
//! its ICE restart) or the refusal, goes to the HTTP request waiting for it, and the rest
//! (trickled candidates, a hangup) are dropped: the answer already carries campeer's host
//! candidates, and a WHEP player learns of a hangup from the media stopping.

use crate::mqtt::{PublishError, Publisher};
use crate::protocol::{DeviceMessage, Segment, WHEP_SESSION_PREFIX};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{mpsc, oneshot};

/// WHEP requests that may wait for their answer at once, per device. More are refused
/// (503) before any session is made for them.
pub const MAX_WAITING_ANSWERS: usize = 64;

/// Messages a publication's session may leave for its task: its candidates, a handful.
pub const PUBLICATION_QUEUE: usize = 64;

#[derive(Clone)]
pub struct Outbox {
    route: Route,
}

#[derive(Clone)]
enum Route {
    /// Viewers: MQTT topics, and WHEP requests waiting for their answers.
    Viewers {
        publisher: Publisher,
        waiting: Arc<Mutex<HashMap<Segment, oneshot::Sender<DeviceMessage>>>>,
    },
    /// A publication's task.
    Publication(mpsc::Sender<DeviceMessage>),
}

impl Outbox {
    pub fn new(publisher: Publisher) -> Self {
        Self {
            route: Route::Viewers {
                publisher,
                waiting: Arc::default(),
            },
        }
    }

    /// The outbox of a publication's session, and where its task reads what it was sent.
    pub fn for_publication() -> (Self, mpsc::Receiver<DeviceMessage>) {
        let (sender, receiver) = mpsc::channel(PUBLICATION_QUEUE);
        let outbox = Self {
            route: Route::Publication(sender),
        };
        (outbox, receiver)
    }

    /// Whether `session` is a WHEP viewer's.
    pub fn is_whep(session: &Segment) -> bool {
        session.as_str().starts_with(WHEP_SESSION_PREFIX)
    }

    /// A WHEP request waits for `session`'s answer or refusal; `None` when too many wait.
    pub fn wait_for_answer(&self, session: Segment) -> Option<oneshot::Receiver<DeviceMessage>> {
        let Route::Viewers { waiting, .. } = &self.route else {
            return None;
        };
        let mut waiting = waiting.lock().unwrap_or_else(PoisonError::into_inner);
        // Requests that gave up (timed out, client gone) leave a closed sender behind.
        waiting.retain(|_, sender| !sender.is_closed());
        if waiting.len() >= MAX_WAITING_ANSWERS {
            return None;
        }
        let (sender, receiver) = oneshot::channel();
        waiting.insert(session, sender);
        Some(receiver)
    }

    /// Sends `message` to viewer `to`.
    pub fn send(&self, to: &Segment, message: &DeviceMessage) -> Result<(), PublishError> {
        let (publisher, waiting) = match &self.route {
            Route::Viewers { publisher, waiting } => (publisher, waiting),
            Route::Publication(task) => {
                // A full queue means the task is not reading: a late candidate is not missed
                // by a publication that already connected or failed.
                let _ = task.try_send(message.clone());
                return Ok(());
            }
        };
        if !Self::is_whep(to) {
            return publisher.to_viewer(to, message);
        }
        if matches!(
            message,
            DeviceMessage::Answer { .. } | DeviceMessage::Error { .. }
        ) {
            let sender = waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(to);
            if let Some(sender) = sender {
                // The request may have given up meanwhile; then nobody needs the message.
                let _ = sender.send(message.clone());
            }
        }
        Ok(())
    }
}
