//! Admission of a new ArgonBranch: the operator's finalizer is added as the
//! object is created. Without it the branch's first reconcile writes the
//! finalizer itself before anything else: one more apiserver write and
//! watch event per branch, and under a burst of new branches the apiserver's
//! time is what bounds how soon they are Ready. The reconcile still adds a
//! missing finalizer (`controller::branch`): this webhook is optional (its
//! `failurePolicy` is `Ignore`), and branches created before it existed or
//! while it was unreachable have none. It never refuses a branch.

use crate::crd::FINALIZER;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use serde_json::Value;

/// The path the apiserver posts ArgonBranch AdmissionReviews to.
pub const PATH: &str = "/mutate-argonbranches";

/// Allows every request; a branch being created without the finalizer
/// gets it.
pub fn admit(request: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    if request.operation != Operation::Create {
        return response;
    }
    let Some(branch) = &request.object else {
        return response;
    };
    let Some(patch) = finalizer_patch(branch.metadata.finalizers.as_deref()) else {
        return response;
    };
    match response.clone().with_patch(patch) {
        Ok(patched) => patched,
        // Unreachable for this patch; the reconcile adds the finalizer then.
        Err(e) => {
            tracing::warn!(error = %e, "encoding the finalizer patch");
            response
        }
    }
}

/// The JSON patch adding the finalizer to an object whose finalizers are
/// `current`; `None` when it is there already.
fn finalizer_patch(current: Option<&[String]>) -> Option<Patch> {
    let op = match current {
        Some(list) if list.iter().any(|f| f == FINALIZER) => return None,
        // Appended, so finalizers other controllers (or the user) set stay
        // where they are.
        Some(list) if !list.is_empty() => AddOperation {
            path: PointerBuf::from_tokens(["metadata", "finalizers", "-"]),
            value: Value::String(FINALIZER.into()),
        },
        _ => AddOperation {
            path: PointerBuf::from_tokens(["metadata", "finalizers"]),
            value: Value::Array(vec![Value::String(FINALIZER.into())]),
        },
    };
    Some(Patch(vec![PatchOperation::Add(op)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn review(operation: &str, object: Value) -> AdmissionRequest<DynamicObject> {
        let review: kube::core::admission::AdmissionReview<DynamicObject> =
            serde_json::from_value(json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {
                    "uid": "0f0e",
                    "kind": {"group": "argon.dev", "version": "v1alpha1", "kind": "ArgonBranch"},
                    "resource": {"group": "argon.dev", "version": "v1alpha1", "resource": "argonbranches"},
                    "operation": operation,
                    "userInfo": {},
                    "object": object,
                }
            }))
            .unwrap();
        review.try_into().unwrap()
    }

    fn branch(finalizers: Option<Vec<&str>>) -> Value {
        let mut metadata = json!({"name": "feature", "namespace": "shop"});
        if let Some(f) = finalizers {
            metadata["finalizers"] = json!(f);
        }
        json!({"apiVersion": "argon.dev/v1alpha1", "kind": "ArgonBranch", "metadata": metadata,
               "spec": {"project": "shop", "parent": "main"}})
    }

    /// The finalizers after the response's patch is applied to `object`.
    fn finalizers_after(object: Value, response: &AdmissionResponse) -> Value {
        let mut object = object;
        if let Some(bytes) = &response.patch {
            let patch: Patch = serde_json::from_slice(bytes).unwrap();
            json_patch::patch(&mut object, &patch).unwrap();
        }
        object["metadata"]["finalizers"].clone()
    }

    #[test]
    fn a_new_branch_gets_the_finalizer_beside_any_it_has() {
        for (had, want) in [
            (None, json!([FINALIZER])),
            (Some(vec![]), json!([FINALIZER])),
            (
                Some(vec!["example.com/keep"]),
                json!(["example.com/keep", FINALIZER]),
            ),
            (Some(vec![FINALIZER]), json!([FINALIZER])),
        ] {
            let object = branch(had.clone());
            let response = admit(&review("CREATE", object.clone()));
            assert!(response.allowed, "{had:?}");
            assert_eq!(finalizers_after(object, &response), want, "{had:?}");
        }
    }

    #[test]
    fn only_creation_is_patched_and_nothing_is_refused() {
        for operation in ["UPDATE", "DELETE", "CONNECT"] {
            let object = branch(None);
            let response = admit(&review(operation, object.clone()));
            assert!(response.allowed);
            assert!(response.patch.is_none(), "{operation}");
        }
        // A request without an object (malformed for CREATE) is let through.
        let mut request = review("CREATE", branch(None));
        request.object = None;
        let response = admit(&request);
        assert!(response.allowed && response.patch.is_none());
    }
}
