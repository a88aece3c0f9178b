//! Conditions in the Kubernetes convention (`type`, `status`, `reason`,
//! `message`, `lastTransitionTime`, `observedGeneration`), kept as a list
//! where each type appears once and the transition time changes only when
//! the status does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Condition types used by the controllers.
pub mod types {
    pub const READY: &str = "Ready";
    pub const STORE_REACHABLE: &str = "StoreReachable";
    pub const ENDPOINT_READY: &str = "EndpointReady";
    pub const IMPORTED: &str = "Imported";
    pub const DELETION_BLOCKED: &str = "DeletionBlocked";
    pub const RESET: &str = "Reset";
    pub const USERS_READY: &str = "UsersReady";
    pub const CONNECTION_SECRET: &str = "ConnectionSecret";
    pub const ENDPOINT_TLS: &str = "EndpointTLS";
    pub const NETWORK_POLICY: &str = "NetworkPolicy";
    pub const SIDECAR_IMAGE: &str = "SidecarImage";
    pub const SIDECAR_CACHE: &str = "SidecarCache";
}

/// Helpers on a status's condition list.
pub trait Conditions {
    /// Sets (or replaces) the condition of `type_`. The transition time is
    /// kept when the status does not change, so it says when it last flipped.
    fn set(&mut self, type_: &str, ok: bool, reason: &str, message: &str, generation: Option<i64>);
    fn get_condition(&self, type_: &str) -> Option<&Condition>;
    fn is_true(&self, type_: &str) -> bool {
        self.get_condition(type_)
            .is_some_and(|c| c.status == "True")
    }
    fn drop_condition(&mut self, type_: &str);
}

impl Conditions for Vec<Condition> {
    fn set(&mut self, type_: &str, ok: bool, reason: &str, message: &str, generation: Option<i64>) {
        let status = if ok { "True" } else { "False" };
        let last_transition_time = match self.get_condition(type_) {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => Time(Timestamp::now()),
        };
        let condition = Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            last_transition_time,
            observed_generation: generation,
        };
        match self.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => *c = condition,
            None => self.push(condition),
        }
    }

    fn get_condition(&self, type_: &str) -> Option<&Condition> {
        self.iter().find(|c| c.type_ == type_)
    }

    fn drop_condition(&mut self, type_: &str) {
        self.retain(|c| c.type_ != type_);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut list: Vec<Condition> = Vec::new();
        list.set("Ready", false, "Pending", "waiting", Some(1));
        let first = list[0].last_transition_time.clone();
        list.set("Ready", false, "StillPending", "still", Some(2));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].last_transition_time, first);
        assert_eq!(list[0].reason, "StillPending");
        list.set("Ready", true, "Ready", "ok", Some(2));
        assert!(list.is_true("Ready"));
        list.drop_condition("Ready");
        assert!(list.is_empty());
    }
}
