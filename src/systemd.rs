//! systemd integration for `Type=notify` (see systemd/campeer.service): READY=1 once the
//! configuration is loaded and the broker connection is up, STATUS= lines with the broker state
//! and the viewer count, WATCHDOG=1 only while every loop that matters keeps going round, and
//! STOPPING=1 on shutdown.
//!
//! Messages go through sd-notify (pure Rust, no libsystemd). Outside systemd there is no
//! NOTIFY_SOCKET and every call does nothing.

use crate::device::{DeviceHealth, Summary};
use sd_notify::NotifyState;
use std::time::Duration;

/// What to tell the service manager as the device's summary changes. Pure, so the rules are
/// tested without a socket.
#[derive(Debug, Default)]
pub struct Announcer {
    ready_sent: bool,
    last_status: Option<String>,
}

/// One notification, in the service manager's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Ready,
    Status(String),
}

impl Announcer {
    /// The notices a new summary calls for: readiness once, the first time the broker is
    /// connected, and a status line whenever it reads differently.
    pub fn update(&mut self, summary: Summary) -> Vec<Notice> {
        let mut notices = Vec::new();
        if summary.broker_connected && !self.ready_sent {
            self.ready_sent = true;
            notices.push(Notice::Ready);
        }
        let status = status_line(summary);
        if self.last_status.as_ref() != Some(&status) {
            self.last_status = Some(status.clone());
            notices.push(Notice::Status(status));
        }
        notices
    }
}

/// The STATUS= line `systemctl status campeer` shows.
pub fn status_line(summary: Summary) -> String {
    let viewers = match summary.viewers {
        1 => "1 viewer".to_owned(),
        n => format!("{n} viewers"),
    };
    if summary.broker_connected {
        format!("{viewers}; connected to the broker")
    } else {
        format!("{viewers}; waiting for the broker")
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// Keeps systemd informed until the runtime stops: readiness and status from the device's
/// summary, and watchdog pings (a quarter of the watchdog time apart) while no loop has
/// stalled for half of it. A stalled loop is logged and the pings stop, so systemd restarts
/// campeer.
pub fn spawn(health: DeviceHealth) -> tokio::task::JoinHandle<()> {
    let watchdog = sd_notify::watchdog_enabled();
    if let Some(timeout) = watchdog {
        tracing::info!("systemd watchdog: {timeout:?}");
    }
    tokio::spawn(serve(health, watchdog))
}

async fn serve(health: DeviceHealth, watchdog: Option<Duration>) {
    let mut summary = health.summary();
    let mut announcer = Announcer::default();
    // Without a watchdog the timer still ticks, rarely, and does nothing.
    let period = watchdog.map_or(Duration::from_secs(3600), |w| w / 4);
    let mut ping = tokio::time::interval(period);
    let mut was_stalled = false;
    loop {
        let current = *summary.borrow_and_update();
        for notice in announcer.update(current) {
            match notice {
                Notice::Ready => send(&[NotifyState::Ready]),
                Notice::Status(line) => send(&[NotifyState::Status(&line)]),
            }
        }
        tokio::select! {
            changed = summary.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = ping.tick() => {
                let Some(timeout) = watchdog else { continue };
                let stalled = health.stalled(timeout / 2);
                if stalled.is_empty() {
                    if was_stalled {
                        tracing::info!("every loop is going round again");
                    }
                    was_stalled = false;
                    send(&[NotifyState::Watchdog]);
                } else {
                    was_stalled = true;
                    tracing::error!(
                        "{} stopped going round; withholding the watchdog ping so that \
                         systemd restarts campeer",
                        stalled.join(" and ")
                    );
                }
            }
        }
    }
}

/// Tells systemd that campeer is shutting down (it then waits for the exit, not a ping).
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_when_the_broker_connects_and_status_on_every_change() {
        let mut announcer = Announcer::default();
        let waiting = Summary {
            broker_connected: false,
            viewers: 0,
        };
        assert_eq!(
            announcer.update(waiting),
            vec![Notice::Status("0 viewers; waiting for the broker".into())]
        );
        assert!(announcer.update(waiting).is_empty(), "nothing new");
        let connected = Summary {
            broker_connected: true,
            viewers: 0,
        };
        assert_eq!(
            announcer.update(connected),
            vec![
                Notice::Ready,
                Notice::Status("0 viewers; connected to the broker".into())
            ]
        );
        let watched = Summary {
            broker_connected: true,
            viewers: 1,
        };
        assert_eq!(
            announcer.update(watched),
            vec![Notice::Status("1 viewer; connected to the broker".into())]
        );
        // A broker outage and return: status changes, readiness is not sent again.
        announcer.update(Summary {
            broker_connected: false,
            viewers: 1,
        });
        assert_eq!(
            announcer.update(watched),
            vec![Notice::Status("1 viewer; connected to the broker".into())]
        );
    }
}
