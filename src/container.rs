//! Container: which container (or systemd unit) a process runs in, read from `/proc/PID/cgroup`
//! alone — no daemon is asked. Docker ids, Kubernetes pod UIDs and container ids (kubepods slices
//! and directories, containerd and CRI-O scopes), Podman, and a systemd unit otherwise; cgroup v1
//! and v2.
//!
//! The result is small, fixed-size, copyable data so that it can ride in every host sample.

use std::fmt;

/// Who made the container, as Kubernetes names it in `containerID` (`containerd://…`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Runtime {
    Docker,
    Containerd,
    CriO,
    Podman,
    /// A Kubernetes container whose cgroup path does not name the runtime (cgroupfs driver).
    Kubernetes,
    /// No container: the systemd unit the process runs in (`nginx.service`).
    Systemd,
    /// A container id under a parent that names no runtime hcleak knows (LXC, a custom driver).
    Other,
}

impl Runtime {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
            Runtime::Kubernetes => "kubernetes",
            Runtime::Systemd => "systemd",
            Runtime::Other => "container",
        }
    }
    fn parse(s: &str) -> Option<Runtime> {
        Runtime::ALL.into_iter().find(|r| r.name() == s)
    }
    const ALL: [Runtime; 7] = [
        Runtime::Docker,
        Runtime::Containerd,
        Runtime::CriO,
        Runtime::Podman,
        Runtime::Kubernetes,
        Runtime::Systemd,
        Runtime::Other,
    ];
}

/// Inline text of at most `N` bytes, from a known alphabet (hex, uuid, unit names).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Tag<const N: usize>([u8; N], u8);

impl<const N: usize> Tag<N> {
    /// `None` when empty, too long, or holding characters a label or CSV cell cannot hold bare.
    fn new(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let ok = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'@' | b':');
        if b.is_empty() || b.len() > N || !b.iter().all(ok) {
            return None;
        }
        let mut a = [0u8; N];
        a[..b.len()].copy_from_slice(b);
        Some(Tag(a, b.len() as u8))
    }
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0[..usize::from(self.1)]).unwrap_or("")
    }
}

/// The container a process runs in.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Container {
    pub(crate) runtime: Runtime,
    /// The container id (64 hex digits), or the systemd unit's name.
    id: Tag<96>,
    /// The Kubernetes pod UID, when the cgroup path names one.
    pod: Option<Tag<36>>,
}

impl Container {
    pub(crate) fn id(&self) -> &str {
        self.id.as_str()
    }
    /// The id as `docker ps` and `crictl ps` show it: its first 12 characters.
    pub(crate) fn short_id(&self) -> &str {
        let id = self.id();
        if self.runtime == Runtime::Systemd {
            id
        } else {
            id.get(..12).unwrap_or(id)
        }
    }
    pub(crate) fn pod(&self) -> Option<&str> {
        self.pod.as_ref().map(|p| p.as_str())
    }
    /// The short, human form: `docker://0123456789ab`, `systemd://nginx.service`.
    pub(crate) fn short(&self) -> String {
        format!("{}://{}", self.runtime.name(), self.short_id())
    }

    /// Parses the text of `/proc/PID/cgroup`. `None` for a process in no container or unit
    /// (the root cgroup, a user session) or text that is not a cgroup file.
    pub(crate) fn from_cgroup(text: &str) -> Option<Container> {
        // cgroup v2's single line first, then the v1 hierarchies that name containers best.
        let paths = text.lines().filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
            Some((ctrl, path))
        });
        let mut best: Option<Container> = None;
        for (ctrl, path) in paths {
            let Some(c) = from_path(path) else { continue };
            // A container beats a unit; the v2 line (empty controller list) or name=systemd wins ties.
            let better = match best {
                None => true,
                Some(b) => b.runtime == Runtime::Systemd && c.runtime != Runtime::Systemd,
            };
            if better || (ctrl.is_empty() && best.is_some_and(|b| b.runtime == c.runtime)) {
                best = Some(c);
            }
        }
        best
    }

    /// The CSV form: `runtime://id` and, for a pod, `;pod=UID`. Read back by [`Container::parse`].
    pub(crate) fn to_field(self) -> String {
        match self.pod() {
            Some(p) => format!("{}://{};pod={p}", self.runtime.name(), self.id()),
            None => format!("{}://{}", self.runtime.name(), self.id()),
        }
    }

    /// Reads [`Container::to_field`]'s form back.
    pub(crate) fn parse(s: &str) -> Option<Container> {
        let (head, pod) = match s.split_once(";pod=") {
            Some((h, p)) => (h, Some(Tag::new(p)?)),
            None => (s, None),
        };
        let (rt, id) = head.split_once("://")?;
        Some(Container { runtime: Runtime::parse(rt)?, id: Tag::new(id)?, pod })
    }
}

impl fmt::Debug for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_field())
    }
}

impl fmt::Display for Container {
    /// `docker://0123456789ab`, `containerd://0123456789ab (pod 5b1c…)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.runtime.name(), self.short_id())?;
        if let Some(p) = self.pod() {
            write!(f, " (pod {p})")?;
        }
        Ok(())
    }
}

fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit())
}

/// A pod UID from a path component: `pod<uid>` (cgroupfs) or `kubepods-<qos>-pod<uid_with_underscores>.slice`.
fn pod_uid(comp: &str) -> Option<Tag<36>> {
    let comp = comp.strip_suffix(".slice").unwrap_or(comp);
    let i = comp.rfind("pod")?;
    let uid = comp[i + 3..].replace('_', "-");
    let dashes = uid.bytes().filter(|&c| c == b'-').count();
    (uid.len() == 36 && dashes == 4 && uid.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-'))
        .then(|| Tag::new(&uid))
        .flatten()
}

fn from_path(path: &str) -> Option<Container> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut last = *comps.last()?;
    // Podman (and crun) put the payload one level below the scope: `libpod-<id>.scope/container`.
    if last == "container" && comps.len() >= 2 {
        last = comps[comps.len() - 2];
    }
    let in_kube = comps.iter().any(|c| c.starts_with("kubepods"));
    let pod = comps.iter().rev().find_map(|c| pod_uid(c));
    let scope = last.strip_suffix(".scope");
    let prefixed = [
        ("docker-", Runtime::Docker),
        ("cri-containerd-", Runtime::Containerd),
        ("crio-", Runtime::CriO),
        ("libpod-", Runtime::Podman),
    ];
    for (prefix, rt) in prefixed {
        if let Some(id) = scope.unwrap_or(last).strip_prefix(prefix).filter(|id| is_hex_id(id)) {
            return Some(Container { runtime: rt, id: Tag::new(id)?, pod });
        }
    }
    if is_hex_id(last) {
        // cgroupfs driver: the parent names the runtime (`/docker/<id>`) or the pod (`/kubepods/…/pod<uid>/<id>`).
        let parent = comps.len().checked_sub(2).and_then(|i| comps.get(i)).copied().unwrap_or("");
        let rt = if in_kube || pod.is_some() {
            Runtime::Kubernetes
        } else if parent == "docker" {
            Runtime::Docker
        } else if parent.starts_with("libpod") || parent == "machine.slice" {
            Runtime::Podman
        } else {
            Runtime::Other
        };
        return Some(Container { runtime: rt, id: Tag::new(last)?, pod });
    }
    // No container: a systemd service (a user's session or the init scope say nothing useful).
    if last.ends_with(".service") && !last.starts_with("user@") && !in_kube {
        return Some(Container { runtime: Runtime::Systemd, id: Tag::new(last)?, pod: None });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f0b1a6f5d1e2c3b4a59687766554433221100ffeeddccbbaa99887766554433";
    const ID2: &str = "9d8a7e6f5c4b3a2918273645546372819aabbccddeeff0011223344556677889";

    fn c(text: &str) -> Option<(Runtime, String, Option<String>)> {
        Container::from_cgroup(text).map(|c| (c.runtime, c.id().to_string(), c.pod().map(str::to_string)))
    }

    #[test]
    fn docker_v1_and_v2() {
        // cgroup v1, cgroupfs driver (Docker's default before cgroup v2).
        let v1 = format!(
            "12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n2:cpu,cpuacct:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/system.slice/containerd.service\n"
        );
        assert_eq!(c(&v1), Some((Runtime::Docker, ID.into(), None)));
        // cgroup v2, systemd driver.
        assert_eq!(c(&format!("0::/system.slice/docker-{ID}.scope\n")), Some((Runtime::Docker, ID.into(), None)));
        // cgroup v2, cgroupfs driver.
        assert_eq!(c(&format!("0::/docker/{ID}\n")), Some((Runtime::Docker, ID.into(), None)));
        let d = Container::from_cgroup(&format!("0::/system.slice/docker-{ID}.scope\n")).unwrap();
        assert_eq!(d.to_string(), "docker://3f0b1a6f5d1e");
    }

    #[test]
    fn kubernetes_containerd_crio_and_cgroupfs() {
        let uid = "5b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
        let uid_ = uid.replace('-', "_");
        // containerd, systemd driver, cgroup v2, burstable.
        let s = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(c(&s), Some((Runtime::Containerd, ID.into(), Some(uid.into()))));
        // CRI-O, besteffort.
        let s = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-{ID2}.scope\n"
        );
        assert_eq!(c(&s), Some((Runtime::CriO, ID2.into(), Some(uid.into()))));
        // Guaranteed QoS (no qos slice).
        let s = format!("0::/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{ID}.scope\n");
        assert_eq!(c(&s), Some((Runtime::Containerd, ID.into(), Some(uid.into()))));
        // cgroup v1, cgroupfs driver: the runtime is not in the path.
        let s = format!(
            "11:memory:/kubepods/besteffort/pod{uid}/{ID}\n4:cpu,cpuacct:/kubepods/besteffort/pod{uid}/{ID}\n1:name=systemd:/kubepods/besteffort/pod{uid}/{ID}\n"
        );
        assert_eq!(c(&s), Some((Runtime::Kubernetes, ID.into(), Some(uid.into()))));
        let k = Container::from_cgroup(&s).unwrap();
        assert_eq!(k.to_string(), format!("kubernetes://3f0b1a6f5d1e (pod {uid})"));
        // kind: a node in a Docker container, the pod below kubelet's slice.
        let s = format!(
            "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(c(&s), Some((Runtime::Containerd, ID.into(), Some(uid.into()))));
    }

    #[test]
    fn podman_systemd_units_and_nothing() {
        let s = format!("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container\n");
        // Podman's payload sits one level below the scope: the scope's id still names it.
        assert_eq!(c(&s), Some((Runtime::Podman, ID.into(), None)));
        let s = format!("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope\n");
        assert_eq!(c(&s), Some((Runtime::Podman, ID.into(), None)));
        assert_eq!(c("0::/system.slice/nginx.service\n"), Some((Runtime::Systemd, "nginx.service".into(), None)));
        assert_eq!(
            c("12:pids:/system.slice/haproxy.service\n1:name=systemd:/system.slice/haproxy.service\n"),
            Some((Runtime::Systemd, "haproxy.service".into(), None))
        );
        assert_eq!(c(&format!("4:memory:/lxc/{ID}\n")), Some((Runtime::Other, ID.into(), None)));
        assert_eq!(c("0::/\n"), None);
        assert_eq!(c("0::/init.scope\n"), None);
        assert_eq!(c("0::/user.slice/user-1000.slice/session-3.scope\n"), None);
        assert_eq!(c(""), None);
        assert_eq!(c("garbage\n\u{0}\n:::\n"), None);
        // A unit name with characters no label should carry is refused, not passed on.
        assert_eq!(c("0::/system.slice/a\"b.service\n"), None);
    }

    #[test]
    fn the_csv_field_reads_back() {
        let uid = "5b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
        for text in [
            format!("0::/kubepods.slice/kubepods-pod{}.slice/crio-{ID}.scope\n", uid.replace('-', "_")),
            format!("0::/docker/{ID}\n"),
            "0::/system.slice/nginx.service\n".to_string(),
        ] {
            let k = Container::from_cgroup(&text).unwrap();
            assert_eq!(Container::parse(&k.to_field()), Some(k), "{}", k.to_field());
            assert!(!k.to_field().contains(','));
        }
        assert_eq!(Container::parse("docker:/x"), None);
        assert_eq!(Container::parse("nosuch://abc"), None);
    }
}
