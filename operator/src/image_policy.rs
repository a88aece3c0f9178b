//! Which image branch endpoints and injected sidecars run. The sidecar holds
//! the project's store credentials and serves its data, so the image is the
//! installation's choice, not a project author's: the chart's `sidecarImage`
//! by default, or `ArgonProject.spec.sidecar.image` only when it matches the
//! chart's allow-list (`allowedSidecarImages`). The one rule both paths call:
//! the branch controller before it writes an endpoint, the webhook before it
//! patches a pod (`endpoint::sidecar_container` takes the policy, so no
//! container is built without it).

use crate::crd::ArgonProject;
use crate::error::Error;

/// The default image and the patterns a project's image may match.
#[derive(Clone, Debug)]
pub struct ImagePolicy {
    default: String,
    allowed: Vec<String>,
}

impl ImagePolicy {
    /// `allowed`: exact references, or prefixes ending in `*` (use
    /// `repo:*` or `repo@sha256:*`: `repo*` would also match `repo-evil`).
    pub fn new(default: &str, allowed: &[String]) -> ImagePolicy {
        ImagePolicy {
            default: default.to_string(),
            allowed: allowed
                .iter()
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect(),
        }
    }

    /// Whether `image` may run: the default, an exact entry, or a prefix entry.
    pub fn allows(&self, image: &str) -> bool {
        if image == self.default {
            return true;
        }
        self.allowed
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => image.starts_with(prefix),
                None => image == pattern,
            })
    }

    /// The image for `project`'s sidecars and endpoints, or why it is refused.
    pub fn image_for(&self, project: &ArgonProject) -> Result<String, Error> {
        let requested = project
            .spec
            .sidecar
            .as_ref()
            .and_then(|s| s.image.as_deref());
        match requested {
            None => Ok(self.default.clone()),
            Some(image) if self.allows(image) => Ok(image.to_string()),
            Some(image) => Err(Error::ImageNotAllowed {
                image: image.to_string(),
                allowed: self.describe(),
            }),
        }
    }

    /// The allowed images, for a refusal's message.
    fn describe(&self) -> String {
        std::iter::once(self.default.as_str())
            .chain(self.allowed.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ArgonProjectSpec, SidecarDefaults};

    fn project(image: Option<&str>) -> ArgonProject {
        let mut spec = ArgonProjectSpec::on_mongodb("s", "argon");
        spec.sidecar = Some(SidecarDefaults {
            image: image.map(String::from),
            ..SidecarDefaults::default()
        });
        ArgonProject::new("shop", spec)
    }

    #[test]
    fn only_the_default_and_listed_images_run() {
        let policy = ImagePolicy::new(
            "argon-sidecar:1",
            &[
                "registry.example.com/argon-sidecar:*".into(),
                "mirror.example.com/argon-sidecar:2".into(),
                "  ".into(),
            ],
        );
        assert_eq!(policy.image_for(&project(None)).unwrap(), "argon-sidecar:1");
        assert_eq!(
            policy.image_for(&project(Some("argon-sidecar:1"))).unwrap(),
            "argon-sidecar:1"
        );
        assert_eq!(
            policy
                .image_for(&project(Some("registry.example.com/argon-sidecar:9")))
                .unwrap(),
            "registry.example.com/argon-sidecar:9"
        );
        assert!(policy.allows("mirror.example.com/argon-sidecar:2"));
        for refused in [
            "evil.example.com/miner:latest",
            "mirror.example.com/argon-sidecar:3",
            "registry.example.com/argon-sidecar-evil:1",
            "",
            "argon-sidecar:1 ",
        ] {
            match policy.image_for(&project(Some(refused))) {
                Err(Error::ImageNotAllowed { image, allowed }) => {
                    assert_eq!(image, refused);
                    assert!(allowed.contains("argon-sidecar:1"), "{allowed}");
                }
                other => panic!("{refused:?} was not refused: {other:?}"),
            }
        }
        // Nothing listed: the default only.
        let strict = ImagePolicy::new("argon-sidecar:1", &[]);
        assert!(strict.image_for(&project(Some("argon-sidecar:2"))).is_err());
    }
}
