//! Container and pod identity from `/proc/<pid>/cgroup`.
//!
//! The path of a process's cgroup is the only runtime-independent trace of the container it
//! runs in. Runtimes and cgroup drivers name those paths differently, so this module knows
//! the shapes listed in the tests below and treats anything else as "no container".

use std::sync::Arc;

use kepler_core::{ContainerInfo, PodInfo, Runtime};

/// The container (and pod) a cgroup path names.
///
/// Kept apart from `kepler_core::ContainerInfo` because the cgroup file knows neither the
/// container's name nor the pod's name; those come later from the runtime or Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMatch {
    /// The container id: 64 lowercase hex characters.
    pub container_id: String,
    /// The runtime, when the path says which one; `Runtime::Unknown` for a bare id under a
    /// kubelet cgroupfs path, where the kubelet does not say.
    pub runtime: Runtime,
    /// The pod UID with dashes, when the container runs under a kubelet `kubepods` cgroup.
    pub pod_uid: Option<String>,
}

impl CgroupMatch {
    /// The engine's view of this container: its id, runtime and pod UID, with the names
    /// (unknown from the cgroup path) set to `empty` until the runtime or Kubernetes fills them.
    pub fn into_container(self, empty: &Arc<str>) -> ContainerInfo {
        let container = ContainerInfo::new(
            Arc::from(self.container_id),
            Arc::clone(empty),
            self.runtime,
        );
        match self.pod_uid {
            Some(uid) => container.with_pod(PodInfo::new(
                Arc::from(uid),
                Arc::clone(empty),
                Arc::clone(empty),
            )),
            None => container,
        }
    }
}

/// Finds the container a process runs in from the content of its `/proc/<pid>/cgroup`.
///
/// Reads cgroup v1 (`N:controllers:/path`, one line per hierarchy) and v2 (`0::/path`)
/// lines; the first line whose path names a container wins (the lines of one process
/// normally agree). Within a path the innermost container wins, so a container nested in
/// another (docker-in-docker, kind nodes) is reported as the inner one.
///
/// Returns `None` for processes outside containers, and also for the `conmon` monitor
/// processes of CRI-O and Podman (`crio-conmon-<id>.scope`, `libpod-conmon-<id>.scope`):
/// they run beside the container, not in it, and charging them to it would be wrong.
pub fn parse_cgroup(content: &str) -> Option<CgroupMatch> {
    content.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let _hierarchy = parts.next()?;
        let _controllers = parts.next()?;
        let path = parts.next()?.trim();
        match parse_path(path) {
            PathMatch::Container(m) => Some(m),
            // A conmon scope in one hierarchy is one in every hierarchy: not a container.
            PathMatch::Conmon | PathMatch::Nothing => None,
        }
    })
}

enum PathMatch {
    Container(CgroupMatch),
    Conmon,
    Nothing,
}

/// What one path component says.
enum Component<'a> {
    /// A container id with the runtime the component's shape implies, if any, and a pod
    /// UID carried in the same component (containerd's `<slice>:cri-containerd:<id>` form).
    Id {
        id: &'a str,
        runtime: Option<Runtime>,
        pod: Option<String>,
    },
    Conmon,
}

fn parse_path(path: &str) -> PathMatch {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    // Innermost first: the deepest recognised component is the process's own container.
    for (i, comp) in comps.iter().enumerate().rev() {
        let Some(found) = parse_component(comp) else {
            continue;
        };
        let (id, hinted, own_pod) = match found {
            Component::Conmon => return PathMatch::Conmon,
            Component::Id { id, runtime, pod } => (id, runtime, pod),
        };
        let outer = comps.get(..i).unwrap_or_default();
        let pod_uid = own_pod.or_else(|| pod_from_ancestors(outer));
        let runtime = hinted.unwrap_or_else(|| match outer.last() {
            Some(&"docker") => Runtime::Docker,
            _ if outer.iter().any(|c| c.contains("kubepods")) => Runtime::Kubernetes,
            _ => Runtime::Unknown,
        });
        return PathMatch::Container(CgroupMatch {
            container_id: id.to_owned(),
            runtime,
            pod_uid,
        });
    }
    PathMatch::Nothing
}

/// Prefixed scope names: `<prefix>-<id>` with an optional `.scope`.
const PREFIXES: &[(&str, Runtime)] = &[
    ("docker-", Runtime::Docker),
    ("cri-containerd-", Runtime::Containerd),
    ("containerd-", Runtime::Containerd),
    ("nerdctl-", Runtime::Containerd),
    ("crio-", Runtime::CriO),
    ("libpod-", Runtime::Podman),
];

fn parse_component(comp: &str) -> Option<Component<'_>> {
    if is_container_id(comp) {
        return Some(Component::Id {
            id: comp,
            runtime: None,
            pod: None,
        });
    }
    // containerd outside a systemd-managed scope (e.g. cgroup v2 with the cgroupfs driver
    // under containerd.service): `kubepods-burstable-pod<uid>.slice:cri-containerd:<id>`.
    let mut colon = comp.splitn(3, ':');
    if let (Some(slice), Some(kind), Some(id)) = (colon.next(), colon.next(), colon.next()) {
        if !is_container_id(id) {
            return None;
        }
        let runtime = match kind {
            "cri-containerd" | "containerd" => Some(Runtime::Containerd),
            "docker" => Some(Runtime::Docker),
            "crio" => Some(Runtime::CriO),
            _ => None,
        };
        return Some(Component::Id {
            id,
            runtime,
            pod: pod_from_systemd_slice(slice),
        });
    }
    let base = comp.strip_suffix(".scope").unwrap_or(comp);
    if base.starts_with("crio-conmon-") || base.starts_with("libpod-conmon-") {
        return Some(Component::Conmon);
    }
    PREFIXES.iter().find_map(|&(prefix, runtime)| {
        let id = base.strip_prefix(prefix)?;
        is_container_id(id).then_some(Component::Id {
            id,
            runtime: Some(runtime),
            pod: None,
        })
    })
}

/// 64 lowercase hex characters: the id docker, containerd, CRI-O and podman all use.
fn is_container_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The pod UID from the kubelet's cgroup of the pod, outer to the container.
fn pod_from_ancestors(outer: &[&str]) -> Option<String> {
    for (i, comp) in outer.iter().enumerate().rev() {
        if let Some(uid) = pod_from_systemd_slice(comp) {
            return Some(uid);
        }
        // cgroupfs driver: `/kubepods[/qos]/pod<uid>/<id>`; only under a kubepods parent,
        // so a random `pod...` directory elsewhere is not taken for a pod.
        if let Some(uid) = comp.strip_prefix("pod") {
            let under_kubepods = outer
                .get(..i)
                .is_some_and(|o| o.iter().any(|c| c.contains("kubepods")));
            if under_kubepods && is_pod_uid(uid) {
                return Some(uid.to_owned());
            }
        }
    }
    None
}

/// systemd driver: `kubepods-burstable-pod<uid_with_underscores>.slice` or
/// `kubepods-pod<uid>.slice` (guaranteed QoS), possibly under a custom cgroup root such as
/// kind's `kubelet-kubepods-...`. systemd reserves `-` as the slice
/// separator, so the kubelet writes the UID's dashes as underscores.
fn pod_from_systemd_slice(comp: &str) -> Option<String> {
    let name = comp.strip_suffix(".slice")?;
    let (qos, uid) = name.rsplit_once("-pod")?;
    if !qos.contains("kubepods") {
        return None;
    }
    let uid = uid.replace('_', "-");
    is_pod_uid(&uid).then_some(uid)
}

/// A Kubernetes UID: a dashed UUID for API pods, or 32 hex characters for static pods
/// (the kubelet hashes the manifest). Lowercase hex and dashes only.
fn is_pod_uid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && s.bytes().any(|b| b != b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a9c1b7e4d8a6f0b5c2e9d1a7f3b8c4e6d0a2f9b1c7e5d3a8f6b4c2e0d9a7f";
    const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "8a3d6f2e-1b4c-4d5e-9f0a-7b6c5d4e3f21";
    const UID_US: &str = "8a3d6f2e_1b4c_4d5e_9f0a_7b6c5d4e3f21";

    fn v2(path: &str) -> Option<CgroupMatch> {
        parse_cgroup(&format!("0::{path}\n"))
    }

    fn expect(path: &str, id: &str, runtime: Runtime, pod: Option<&str>) {
        let m = v2(path).unwrap_or_else(|| panic!("no container in {path}"));
        assert_eq!(m.container_id, id, "{path}");
        assert_eq!(m.runtime, runtime, "{path}");
        assert_eq!(m.pod_uid.as_deref(), pod, "{path}");
    }

    #[test]
    fn docker_cgroupfs_driver() {
        expect(&format!("/docker/{ID}"), ID, Runtime::Docker, None);
    }

    #[test]
    fn docker_systemd_driver() {
        expect(
            &format!("/system.slice/docker-{ID}.scope"),
            ID,
            Runtime::Docker,
            None,
        );
    }

    #[test]
    fn containerd_service_with_colon_form() {
        expect(
            &format!("/system.slice/containerd.service/kubepods-burstable-pod{UID_US}.slice:cri-containerd:{ID}"),
            ID,
            Runtime::Containerd,
            Some(UID),
        );
    }

    #[test]
    fn containerd_service_itself_is_no_container() {
        assert_eq!(v2("/system.slice/containerd.service"), None);
    }

    #[test]
    fn cri_containerd_scope() {
        expect(
            &format!("/system.slice/cri-containerd-{ID}.scope"),
            ID,
            Runtime::Containerd,
            None,
        );
    }

    #[test]
    fn crio_scope_and_its_container_subgroup() {
        expect(
            &format!("/machine.slice/crio-{ID}.scope"),
            ID,
            Runtime::CriO,
            None,
        );
        expect(
            &format!("/machine.slice/crio-{ID}.scope/container"),
            ID,
            Runtime::CriO,
            None,
        );
    }

    #[test]
    fn crio_conmon_is_not_a_container() {
        assert_eq!(v2(&format!("/machine.slice/crio-conmon-{ID}.scope")), None);
        let k8s = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/crio-conmon-{ID}.scope"
        );
        assert_eq!(v2(&k8s), None);
    }

    #[test]
    fn podman_rootful_and_rootless() {
        expect(
            &format!("/machine.slice/libpod-{ID}.scope"),
            ID,
            Runtime::Podman,
            None,
        );
        expect(
            &format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
            ID,
            Runtime::Podman,
            None,
        );
        expect(
            &format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"),
            ID,
            Runtime::Podman,
            None,
        );
    }

    #[test]
    fn podman_conmon_is_not_a_container() {
        assert_eq!(
            v2(&format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-conmon-{ID}.scope"
            )),
            None
        );
    }

    #[test]
    fn kubepods_cgroupfs_burstable_besteffort_guaranteed() {
        for qos in ["/burstable", "/besteffort", ""] {
            expect(
                &format!("/kubepods{qos}/pod{UID}/{ID}"),
                ID,
                Runtime::Kubernetes,
                Some(UID),
            );
        }
    }

    #[test]
    fn kubepods_cgroupfs_with_prefixed_id() {
        expect(
            &format!("/kubepods/besteffort/pod{UID}/crio-{ID}"),
            ID,
            Runtime::CriO,
            Some(UID),
        );
    }

    #[test]
    fn kubepods_systemd_driver_each_runtime() {
        for (prefix, runtime) in [
            ("cri-containerd", Runtime::Containerd),
            ("crio", Runtime::CriO),
            ("docker", Runtime::Docker),
        ] {
            expect(
                &format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/{prefix}-{ID}.scope"),
                ID,
                runtime,
                Some(UID),
            );
        }
        // Guaranteed QoS has no QoS slice.
        expect(
            &format!("/kubepods.slice/kubepods-pod{UID_US}.slice/cri-containerd-{ID}.scope"),
            ID,
            Runtime::Containerd,
            Some(UID),
        );
        expect(
            &format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_US}.slice/crio-{ID}.scope/container"),
            ID,
            Runtime::CriO,
            Some(UID),
        );
    }

    #[test]
    fn static_pod_uid_without_dashes() {
        let uid = "6b0f4b2d9a8e4b3c8f1f0d0e2a3b4c5d";
        expect(
            &format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{ID}.scope"),
            ID,
            Runtime::Containerd,
            Some(uid),
        );
    }

    #[test]
    fn pod_slice_without_container_is_no_container() {
        assert_eq!(
            v2(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice"
            )),
            None
        );
        assert_eq!(v2(&format!("/kubepods/burstable/pod{UID}")), None);
    }

    #[test]
    fn nested_docker_in_docker_innermost_wins() {
        expect(
            &format!("/docker/{ID2}/docker/{ID}"),
            ID,
            Runtime::Docker,
            None,
        );
    }

    #[test]
    fn kind_node_innermost_container_with_pod() {
        expect(
            &format!("/docker/{ID2}/kubepods/burstable/pod{UID}/{ID}"),
            ID,
            Runtime::Kubernetes,
            Some(UID),
        );
        expect(
            &format!("/system.slice/docker-{ID2}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{UID_US}.slice/cri-containerd-{ID}.scope"),
            ID,
            Runtime::Containerd,
            Some(UID),
        );
    }

    #[test]
    fn process_of_outer_container_in_kind_node() {
        expect(
            &format!("/docker/{ID2}/system.slice/containerd.service"),
            ID2,
            Runtime::Docker,
            None,
        );
    }

    #[test]
    fn cgroup_v1_lines_agree_first_match_wins() {
        let content = format!(
            "12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/\n"
        );
        let m = parse_cgroup(&content).expect("container");
        assert_eq!(m.container_id, ID);
        assert_eq!(m.runtime, Runtime::Docker);
    }

    #[test]
    fn cgroup_v1_with_some_root_lines_still_matches() {
        let content = format!("12:rdma:/\n11:cpu,cpuacct:/system.slice/docker-{ID}.scope\n0::/\n");
        assert_eq!(
            parse_cgroup(&content).map(|m| m.container_id),
            Some(ID.into())
        );
    }

    #[test]
    fn non_container_paths() {
        for path in [
            "/",
            "/init.scope",
            "/user.slice/user-1000.slice/session-2.scope",
            "/system.slice/sshd.service",
            "/docker",
            "/docker/abc123",
            "/system.slice/docker-abc.scope",
        ] {
            assert_eq!(v2(path), None, "{path}");
        }
    }

    #[test]
    fn uppercase_or_wrong_length_ids_are_not_ids() {
        let upper = ID.to_ascii_uppercase();
        assert_eq!(v2(&format!("/docker/{upper}")), None);
        assert_eq!(v2(&format!("/docker/{}", &ID[..63])), None);
        assert_eq!(v2(&format!("/docker/{ID}0")), None);
    }

    #[test]
    fn malformed_content_is_no_container() {
        assert_eq!(parse_cgroup(""), None);
        assert_eq!(parse_cgroup("garbage"), None);
        assert_eq!(parse_cgroup(&format!("/docker/{ID}")), None);
        assert_eq!(parse_cgroup(":\n::\n"), None);
    }

    #[test]
    fn kubepods_pod_dir_outside_kubepods_is_not_a_pod() {
        expect(&format!("/podabc/{ID}"), ID, Runtime::Unknown, None);
    }
}
