//! The sidecar's cache in pods: the materialized store (`argon-sidecar
//! serve --cache-dir --cache-bytes`, a disk cache of the log from which
//! reads of past points are served) on an `emptyDir` volume, since pods run
//! with a read-only root filesystem. The one rule both paths call: the
//! branch controller for an endpoint's Deployment, the webhook for an
//! injected sidecar; the project controller shows it (`SidecarCache`
//! condition), including a memory limit too small for the budget.
//!
//! The chart sets the defaults (`sidecar.cache.*`, [`CacheDefaults`]); a
//! project overrides them in `spec.sidecar.cache`. The disk size is the
//! volume's `sizeLimit` (the kubelet evicts a pod whose emptyDir grows past
//! it); the sidecar bounds its own use below that through
//! `ARGON_CACHE_DISK_BYTES`, set [`DISK_BOUND_PERCENT`] of the way up.

use crate::crd::ArgonProject;
use crate::error::{Error, Result};
use crate::quantity::{self, MIB, TIB};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Where the cache volume is mounted in the sidecar container.
pub const CACHE_DIR: &str = "/var/cache/argon";
pub const CACHE_VOLUME: &str = "argon-cache";
/// The smallest memory budget: the sidecar's own minimum
/// (`argon_sidecar::config::MIN_CACHE_BYTES`, below which `serve` refuses
/// to start; a test keeps the two equal).
pub const MIN_MEMORY: u64 = 16 * MIB;
pub const MAX_MEMORY: u64 = TIB;
/// The smallest disk: room for the store's files beside a few write buffers.
pub const MIN_DISK: u64 = 64 * MIB;
pub const MAX_DISK: u64 = 1024 * TIB;
/// How much of the volume's `sizeLimit` the sidecar's own disk bound
/// (`ARGON_CACHE_DISK_BYTES`) takes: the rest covers what the bound lets
/// through (one batch, up to `--max-commit-bytes`, can overshoot it, and
/// the size is measured every few batches), so that the sidecar stops
/// filling its store before the kubelet evicts the pod.
pub const DISK_BOUND_PERCENT: u64 = 90;
/// What the sidecar needs besides its cache budget (server, connections,
/// query buffers): a memory limit below budget + this risks an OOM kill.
pub const MEMORY_HEADROOM: u64 = 64 * MIB;

/// The installation's defaults (the chart's `sidecar.cache` values).
#[derive(Clone, Debug, PartialEq)]
pub struct CacheDefaults {
    pub enabled: bool,
    pub memory: String,
    pub disk: String,
}

impl Default for CacheDefaults {
    /// The chart's: on, 256Mi of memory, 2Gi of disk.
    fn default() -> Self {
        CacheDefaults {
            enabled: true,
            memory: "256Mi".into(),
            disk: "2Gi".into(),
        }
    }
}

impl CacheDefaults {
    /// Whether the defaults are usable, or which one is not (a bad chart
    /// value stops the operator at start, before any pod gets it).
    pub fn validate(&self) -> std::result::Result<(), String> {
        memory_bytes(&self.memory, "--sidecar-cache-memory")?;
        disk_bytes(&self.disk, "--sidecar-cache-disk")?;
        Ok(())
    }
}

/// The cache a project's sidecars get.
#[derive(Clone, Debug, PartialEq)]
pub struct SidecarCache {
    /// The memory budget (`ARGON_CACHE_BYTES`).
    pub memory_bytes: u64,
    /// The volume's `sizeLimit`, as written.
    pub disk: String,
    pub disk_bytes: u64,
}

fn in_range(
    value: &str,
    field: &str,
    min: u64,
    max: u64,
    min_name: &str,
    max_name: &str,
) -> std::result::Result<u64, String> {
    let bytes = quantity::parse_bytes(value).map_err(|e| format!("{field}: {e}"))?;
    if bytes < min {
        return Err(format!(
            "{field}: {value} is below the minimum of {min_name}"
        ));
    }
    if bytes > max {
        return Err(format!(
            "{field}: {value} is above the maximum of {max_name}"
        ));
    }
    Ok(bytes)
}

fn memory_bytes(value: &str, field: &str) -> std::result::Result<u64, String> {
    in_range(value, field, MIN_MEMORY, MAX_MEMORY, "16Mi", "1Ti")
}

fn disk_bytes(value: &str, field: &str) -> std::result::Result<u64, String> {
    in_range(value, field, MIN_DISK, MAX_DISK, "64Mi", "1Pi")
}

/// The cache of `project`'s sidecars: `None` when disabled, an error naming
/// the field when a size is not usable (the CRD refuses those; this holds
/// for objects stored before it did).
pub fn for_project(
    project: &ArgonProject,
    defaults: &CacheDefaults,
) -> Result<Option<SidecarCache>> {
    let spec = project
        .spec
        .sidecar
        .as_ref()
        .and_then(|s| s.cache.clone())
        .unwrap_or_default();
    if !spec.enabled.unwrap_or(defaults.enabled) {
        return Ok(None);
    }
    let memory_bytes = match &spec.memory {
        Some(memory) => memory_bytes(memory, "spec.sidecar.cache.memory"),
        None => memory_bytes(&defaults.memory, "the chart's sidecar.cache.memory"),
    }
    .map_err(Error::SidecarCache)?;
    let (disk, field) = match spec.disk {
        Some(disk) => (disk, "spec.sidecar.cache.disk"),
        None => (defaults.disk.clone(), "the chart's sidecar.cache.disk"),
    };
    let disk_bytes = disk_bytes(&disk, field).map_err(Error::SidecarCache)?;
    Ok(Some(SidecarCache {
        memory_bytes,
        disk,
        disk_bytes,
    }))
}

impl SidecarCache {
    /// The pod's volume: node-local scratch, bounded by `sizeLimit`, gone
    /// with the pod (the store is rebuilt from the log).
    pub fn volume(&self) -> Volume {
        Volume {
            name: CACHE_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: None,
                size_limit: Some(Quantity(self.disk.clone())),
            }),
            ..Volume::default()
        }
    }

    /// Mounts the volume in the sidecar container and points the sidecar at it.
    pub fn add_to(&self, container: &mut Container) {
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(VolumeMount {
                name: CACHE_VOLUME.into(),
                mount_path: CACHE_DIR.into(),
                ..VolumeMount::default()
            });
        let env = container.env.get_or_insert_with(Vec::new);
        env.push(EnvVar {
            name: "ARGON_CACHE_DIR".into(),
            value: Some(CACHE_DIR.into()),
            value_from: None,
        });
        env.push(EnvVar {
            name: "ARGON_CACHE_BYTES".into(),
            value: Some(self.memory_bytes.to_string()),
            value_from: None,
        });
        env.push(EnvVar {
            name: "ARGON_CACHE_DISK_BYTES".into(),
            value: Some(self.disk_bound_bytes().to_string()),
            value_from: None,
        });
    }

    /// The sidecar's disk bound: [`DISK_BOUND_PERCENT`] of the volume's
    /// `sizeLimit` (no overflow: the limit is at most 1Pi).
    pub fn disk_bound_bytes(&self) -> u64 {
        self.disk_bytes / 100 * DISK_BOUND_PERCENT
    }

    /// Why `resources` (the project's `spec.sidecar.resources`) would get the
    /// sidecar OOM-killed by its own budget, if they would: a memory limit
    /// below budget + [`MEMORY_HEADROOM`]. A limit this parser cannot read
    /// (`1e9`, milli-units) is the apiserver's to judge, not reported here.
    pub fn memory_limit_shortfall(
        &self,
        resources: Option<&ResourceRequirements>,
    ) -> Option<String> {
        let limit = resources?.limits.as_ref()?.get("memory")?;
        let limit_bytes = quantity::parse_bytes(&limit.0).ok()?;
        let needed = self.memory_bytes.saturating_add(MEMORY_HEADROOM);
        (limit_bytes < needed).then(|| {
            format!(
                "spec.sidecar.resources.limits.memory {} is below the cache's memory budget ({}) plus {} for the rest of the sidecar: lower spec.sidecar.cache.memory or raise the limit to at least {}",
                limit.0,
                quantity::describe(self.memory_bytes),
                quantity::describe(MEMORY_HEADROOM),
                quantity::describe(needed),
            )
        })
    }

    /// What the cache is, for a condition's message.
    pub fn describe(&self) -> String {
        format!(
            "endpoints and injected sidecars keep a cache of the log on an emptyDir of {} at {CACHE_DIR}, within {} of memory",
            self.disk,
            quantity::describe(self.memory_bytes)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ArgonProjectSpec, CacheSpec, SidecarDefaults};
    use crate::quantity::GIB;
    use std::collections::BTreeMap;

    fn project(cache: Option<CacheSpec>) -> ArgonProject {
        let mut spec = ArgonProjectSpec::on_mongodb("s", "argon");
        spec.sidecar = Some(SidecarDefaults {
            cache,
            ..SidecarDefaults::default()
        });
        ArgonProject::new("shop", spec)
    }

    #[test]
    fn the_minimum_is_the_sidecars() {
        assert_eq!(MIN_MEMORY, argon_sidecar::config::MIN_CACHE_BYTES);
        assert_eq!(
            quantity::parse_bytes(&CacheDefaults::default().memory),
            Ok(argon_sidecar::config::DEFAULT_CACHE_BYTES)
        );
    }

    #[test]
    fn the_disk_bound_is_under_the_volume_and_one_the_sidecar_takes() {
        for disk in ["64Mi", "2Gi", "1Pi"] {
            let cache = for_project(
                &project(Some(CacheSpec {
                    disk: Some(disk.into()),
                    ..CacheSpec::default()
                })),
                &CacheDefaults::default(),
            )
            .unwrap()
            .unwrap();
            let bound = cache.disk_bound_bytes();
            assert!(bound < cache.disk_bytes, "{disk}");
            assert!(bound >= cache.disk_bytes / 100 * 89, "{disk}");
            assert!(
                bound >= argon_sidecar::config::MIN_CACHE_DISK_BYTES,
                "{disk}"
            );
            let mut container = Container::default();
            cache.add_to(&mut container);
            let env = container.env.unwrap_or_default();
            let set = env
                .iter()
                .find(|e| e.name == "ARGON_CACHE_DISK_BYTES")
                .and_then(|e| e.value.clone());
            assert_eq!(set, Some(bound.to_string()), "{disk}");
        }
    }

    #[test]
    fn chart_defaults_unless_the_project_overrides_them() {
        let defaults = CacheDefaults::default();
        let cache = for_project(&project(None), &defaults).unwrap().unwrap();
        assert_eq!(cache.memory_bytes, 256 * MIB);
        assert_eq!(cache.disk, "2Gi");
        let cache = for_project(
            &project(Some(CacheSpec {
                enabled: None,
                memory: Some("1Gi".into()),
                disk: Some("10Gi".into()),
            })),
            &defaults,
        )
        .unwrap()
        .unwrap();
        assert_eq!(cache.memory_bytes, GIB);
        assert_eq!(cache.disk, "10Gi");
        let off = CacheSpec {
            enabled: Some(false),
            ..CacheSpec::default()
        };
        assert_eq!(for_project(&project(Some(off)), &defaults).unwrap(), None);
        let chart_off = CacheDefaults {
            enabled: false,
            ..CacheDefaults::default()
        };
        assert_eq!(for_project(&project(None), &chart_off).unwrap(), None);
        let on = CacheSpec {
            enabled: Some(true),
            ..CacheSpec::default()
        };
        assert!(
            for_project(&project(Some(on)), &chart_off)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn unusable_sizes_name_their_field() {
        let defaults = CacheDefaults::default();
        for (memory, disk, field) in [
            (Some("15Mi"), None, "spec.sidecar.cache.memory"),
            (Some("2Ti"), None, "spec.sidecar.cache.memory"),
            (Some("lots"), None, "spec.sidecar.cache.memory"),
            (None, Some("63Mi"), "spec.sidecar.cache.disk"),
            (None, Some("2Pi"), "spec.sidecar.cache.disk"),
            (None, Some("-1Gi"), "spec.sidecar.cache.disk"),
            (
                None,
                Some("99999999999999999999"),
                "spec.sidecar.cache.disk",
            ),
        ] {
            let spec = CacheSpec {
                enabled: None,
                memory: memory.map(Into::into),
                disk: disk.map(Into::into),
            };
            let e = for_project(&project(Some(spec)), &defaults).unwrap_err();
            assert!(e.to_string().contains(field), "{e}");
        }
        let bad_chart = CacheDefaults {
            memory: "1Mi".into(),
            ..CacheDefaults::default()
        };
        let e = for_project(&project(None), &bad_chart).unwrap_err();
        assert!(
            e.to_string().contains("the chart's sidecar.cache.memory"),
            "{e}"
        );
        assert!(bad_chart.validate().is_err());
        assert!(CacheDefaults::default().validate().is_ok());
    }

    #[test]
    fn a_memory_limit_below_the_budget_is_reported() {
        let cache = for_project(&project(None), &CacheDefaults::default())
            .unwrap()
            .unwrap();
        let limit = |l: &str| ResourceRequirements {
            limits: Some(BTreeMap::from([("memory".to_string(), Quantity(l.into()))])),
            ..ResourceRequirements::default()
        };
        assert_eq!(cache.memory_limit_shortfall(None), None);
        assert_eq!(
            cache.memory_limit_shortfall(Some(&ResourceRequirements::default())),
            None
        );
        assert_eq!(cache.memory_limit_shortfall(Some(&limit("320Mi"))), None);
        assert_eq!(cache.memory_limit_shortfall(Some(&limit("1Gi"))), None);
        let short = cache.memory_limit_shortfall(Some(&limit("319Mi"))).unwrap();
        assert!(short.contains("limits.memory 319Mi"), "{short}");
        assert!(short.contains("320 MiB"), "{short}");
        assert!(
            cache
                .memory_limit_shortfall(Some(&limit("256Mi")))
                .is_some()
        );
    }
}
