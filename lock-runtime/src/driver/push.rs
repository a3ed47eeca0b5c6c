//! Push messages (RESP3) to wake-ups: hand-offs go to the waiter they name, an empty
//! message on a lock's channel is a free, a lost connection interrupts every waiter, and
//! a sharded subscription the server dropped (slot migrated, failover) is handed to the
//! connection to subscribe again.

use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use crate::notify::{Announcement, Notifications};
use crate::queue::Handoff;

/// What a connection's push messages go to.
#[derive(Clone)]
pub(super) struct Dispatch {
    pub(super) notifications: std::sync::Arc<Notifications>,
    /// The server's inbox channel (hand-offs on one server).
    pub(super) inbox: std::sync::Arc<str>,
    /// Where dropped sharded subscriptions go to be renewed (Cluster).
    pub(super) dropped: Option<mpsc::UnboundedSender<String>>,
}

impl Dispatch {
    pub(super) fn push(&self, push: PushInfo) {
        match push.kind {
            PushKind::Message | PushKind::SMessage => self.message(&push.data),
            // Also the answer to our own SUNSUBSCRIBE: the connection checks whether it
            // still wants the channel.
            PushKind::SUnsubscribe => {
                if let (Some(dropped), Some(channel)) =
                    (&self.dropped, push.data.first().and_then(bytes))
                {
                    let _ = dropped.send(String::from_utf8_lossy(channel).into_owned());
                }
            }
            PushKind::Disconnection => self.notifications.interrupt_all(),
            _ => {}
        }
    }

    fn message(&self, data: &[Value]) {
        let [channel, payload] = data else {
            return;
        };
        let (Some(channel), Some(payload)) = (bytes(channel), bytes(payload)) else {
            return;
        };
        if payload.is_empty() && channel != self.inbox.as_bytes() {
            self.notifications.free(&String::from_utf8_lossy(channel));
        } else if let Some(handoff) = Handoff::parse(payload) {
            self.notifications.handoff(handoff);
        } else if let Some(announcement) = Announcement::parse(payload) {
            let channel = String::from_utf8_lossy(channel);
            self.notifications.announce(&channel, announcement);
        } else {
            tracing::debug!(
                name: "lock.malformed_notification",
                target: crate::observe::TARGET,
                payload = %String::from_utf8_lossy(payload),
                "malformed notification ignored"
            );
        }
    }
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::notify::Event;

    fn message(kind: PushKind, channel: &str, payload: &str) -> PushInfo {
        PushInfo {
            kind,
            data: vec![
                Value::BulkString(channel.as_bytes().to_vec()),
                Value::BulkString(payload.as_bytes().to_vec()),
            ],
        }
    }

    #[tokio::test]
    async fn pushes_become_wake_ups() {
        let notifications = Arc::new(Notifications::default());
        let (dropped, mut renew) = mpsc::unbounded_channel();
        let dispatch = Dispatch {
            notifications: notifications.clone(),
            inbox: "inbox".into(),
            dropped: Some(dropped),
        };
        let mut waiter = notifications.register("w", Some("lock:{a}:released"), None);
        dispatch.push(message(PushKind::Message, "inbox", "w 7 100"));
        assert!(matches!(waiter.next().await, Event::Handoff(handoff) if handoff.fence == 7));
        dispatch.push(message(PushKind::SMessage, "lock:{a}:released", "w 0 101"));
        assert!(matches!(waiter.next().await, Event::Handoff(_)));
        dispatch.push(message(PushKind::Message, "lock:{a}:released", ""));
        assert_eq!(waiter.next().await, Event::Free);
        dispatch.push(message(PushKind::Message, "inbox", "garbage"));
        let mut watcher = notifications.register("v", Some("lock:{a}:leader"), None);
        dispatch.push(message(PushKind::SMessage, "lock:{a}:leader", "elected 12"));
        assert_eq!(
            watcher.next().await,
            Event::Announced(crate::notify::Announcement::Elected(12))
        );
        dispatch.push(PushInfo {
            kind: PushKind::SUnsubscribe,
            data: vec![
                Value::BulkString(b"lock:{a}:released".to_vec()),
                Value::Int(0),
            ],
        });
        assert_eq!(renew.recv().await.as_deref(), Some("lock:{a}:released"));
        dispatch.push(PushInfo {
            kind: PushKind::Disconnection,
            data: Vec::new(),
        });
        assert_eq!(waiter.next().await, Event::Interrupted);
    }
}
