//! Kubernetes events, queued by the reconciles and sent one at a time by one
//! task, as client-go's event broadcaster does. A reconcile never waits for
//! an event, and a burst of reconciles does not send its events side by
//! side with its status writes: the apiserver's time goes to the status
//! first (each event POST costs it about a third of a status write), and
//! the events follow. The queue is bounded (client-go's 1,000): past it an
//! event is dropped and counted (`argon_operator_events_dropped_total`),
//! so an apiserver that does not answer costs memory for 1,000 events, not
//! one task per event. Events are for people; the status is the record.

use crate::metrics::Metrics;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Events waiting to be sent, at most (client-go's `maxQueuedEvents`).
pub const QUEUED_EVENTS: usize = 1000;

/// The sending side; the task ends once every sink is dropped and what was
/// queued is sent.
#[derive(Clone)]
pub struct EventSink {
    queue: mpsc::Sender<(Event, ObjectReference)>,
    metrics: Arc<Metrics>,
}

impl EventSink {
    /// Starts the sending task (on the current tokio runtime).
    pub fn start(recorder: Recorder, metrics: Arc<Metrics>, capacity: usize) -> EventSink {
        let (queue, mut queued) = mpsc::channel::<(Event, ObjectReference)>(capacity.max(1));
        tokio::spawn(async move {
            while let Some((event, about)) = queued.recv().await {
                if let Err(e) = recorder.publish(&event, &about).await {
                    tracing::warn!(error = %e, reason = %event.reason, "publishing event");
                }
            }
        });
        EventSink { queue, metrics }
    }

    /// Queues `event` about `about`; dropped (and counted) when the queue is full.
    pub fn publish(&self, event: Event, about: ObjectReference) {
        if let Err(e) = self.queue.try_send((event, about)) {
            let (event, about) = match e {
                mpsc::error::TrySendError::Full(item) | mpsc::error::TrySendError::Closed(item) => {
                    item
                }
            };
            self.metrics.event_dropped();
            tracing::debug!(
                reason = %event.reason,
                name = about.name.as_deref().unwrap_or_default(),
                "event queue full: event dropped"
            );
        }
    }
}
