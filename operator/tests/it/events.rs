//! The operator's events go through one bounded queue (`controller::events`):
//! what fits is sent, in order, to the real apiserver; what does not is
//! dropped and counted, never held without bound.

use crate::support::*;
use argon_operator::controller::events::EventSink;
use argon_operator::metrics::Metrics;
use argon_testkit::wait_until;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Api;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use std::sync::Arc;

/// The reasons of the events about `name` in `ns`, sorted.
async fn reasons(client: &kube::Client, ns: &str, name: &str) -> anyhow::Result<Vec<String>> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let mut reasons: Vec<String> = api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect();
    reasons.sort();
    Ok(reasons)
}

/// Event `n`, with a reason of its own (the recorder folds events of one
/// reason about one object into a series: one object, counted).
fn event(n: usize) -> Event {
    Event {
        type_: EventType::Normal,
        reason: format!("Probe{n}"),
        note: Some(format!("event {n}")),
        action: "Test".into(),
        secondary: None,
    }
}

// One thread: the sending task cannot run between the publishes below, so
// exactly the queue's capacity is taken and the rest is dropped.
#[tokio::test(flavor = "current_thread")]
async fn a_full_event_queue_drops_and_counts_what_does_not_fit() -> anyhow::Result<()> {
    let (_server, client) = kube_with_crds().await?;
    let ns = namespace(&client, "events").await?;
    let about = ObjectReference {
        api_version: Some("argon.dev/v1alpha1".into()),
        kind: Some("ArgonBranch".into()),
        name: Some("feature".into()),
        namespace: Some(ns.clone()),
        ..ObjectReference::default()
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "argon-operator".into(),
            instance: Some("events-test".into()),
        },
    );
    let metrics = Arc::new(Metrics::default());
    let sink = EventSink::start(recorder, metrics.clone(), 3);
    for n in 0..50 {
        sink.publish(event(n), about.clone());
    }
    assert_eq!(metrics.events_dropped(), 47);
    assert!(
        metrics
            .encode()
            .contains("argon_operator_events_dropped_total 47")
    );
    wait_until("the queued events are sent", WAIT, || async {
        Ok(reasons(&client, &ns, "feature").await?.len() == 3)
    })
    .await?;
    assert_eq!(
        reasons(&client, &ns, "feature").await?,
        ["Probe0", "Probe1", "Probe2"]
    );

    // Drained, the queue takes events again.
    sink.publish(event(50), about.clone());
    wait_until("a later event is sent", WAIT, || async {
        Ok(reasons(&client, &ns, "feature").await?.len() == 4)
    })
    .await?;
    assert_eq!(metrics.events_dropped(), 47);
    Ok(())
}
