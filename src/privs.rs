//! Privileges: once the capture is open (and every output, and the metrics port), hcleak becomes
//! an unprivileged user (tcpdump's `-Z`). Capturing needs `CAP_NET_RAW` only to open the socket;
//! host sampling needs to go on reading other users' `/proc/PID/fd`, which the kernel guards twice:
//! the directory is mode 0500 owned by the process's user (`CAP_DAC_READ_SEARCH` lists it) and each
//! link is readable only with ptrace read access (`CAP_SYS_PTRACE`). Those two are kept while
//! sampling, everything else is dropped, the bounding set included; nothing is kept otherwise.
//! Every step is checked: a drop that did not happen is an error, never a warning.

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid, User};

/// What the sampler needs to read another user's `/proc/PID/fd` (see the module doc).
pub const SAMPLER_CAPS: [Capability; 2] = [Capability::CAP_DAC_READ_SEARCH, Capability::CAP_SYS_PTRACE];

/// The user to become, resolved before anything is opened so a bad name fails first.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub(crate) uid: Uid,
    pub(crate) gid: Gid,
}

/// The user to become when root: `-Z USER`, or `nobody`. `None` when there is nothing to become
/// (not root, and no -Z); an explicit -Z is checked either way, so a typo always fails.
pub fn target(explicit: Option<&str>) -> Result<Option<Target>, String> {
    let root = nix::unistd::geteuid().is_root();
    match explicit {
        Some(u) => resolve(u).map(|t| root.then_some(t)),
        None if root => resolve("nobody").map(Some),
        None => Ok(None),
    }
}

/// Resolves `-Z USER` (a name, or a numeric uid).
pub fn resolve(user: &str) -> Result<Target, String> {
    let found = match user.parse::<u32>() {
        Ok(n) => User::from_uid(Uid::from_raw(n)),
        Err(_) => User::from_name(user),
    }
    .map_err(|e| format!("-Z {user}: cannot look the user up: {e}"))?;
    let u = found.ok_or_else(|| format!("-Z {user}: no such user; nothing was captured"))?;
    if u.uid.is_root() {
        return Err(format!("-Z {user}: that is root; name an unprivileged user"));
    }
    Ok(Target { name: u.name, uid: u.uid, gid: u.gid })
}

fn names(set: &CapsHashSet) -> String {
    let mut v: Vec<String> = set.iter().map(|c| c.to_string()).collect();
    v.sort();
    if v.is_empty() {
        "no capabilities".into()
    } else {
        v.join(", ")
    }
}

fn step<E: std::fmt::Display>(what: &str, r: Result<(), E>) -> Result<(), String> {
    r.map_err(|e| format!("could not drop privileges ({what}: {e}); stopping"))
}

/// Becomes `to` keeping only `keep` (empty: none), with the bounding and ambient sets emptied
/// and no-new-privs set. Returns the one line that says what is left. Must run before any other
/// thread is started (capability sets are per thread).
pub fn drop_root(to: &Target, keep: &[Capability]) -> Result<String, String> {
    let keep: CapsHashSet = keep.iter().copied().collect();
    // The bounding set first, while CAP_SETPCAP is still effective.
    for c in caps::all() {
        if !keep.contains(&c) && caps::has_cap(None, CapSet::Bounding, c).unwrap_or(false) {
            step("bounding set", caps::drop(None, CapSet::Bounding, c))?;
        }
    }
    step("ambient set", caps::clear(None, CapSet::Ambient))?;
    step("inheritable set", caps::clear(None, CapSet::Inheritable))?;
    if !keep.is_empty() {
        step("keep capabilities", nix::sys::prctl::set_keepcaps(true))?;
    }
    step("groups", nix::unistd::setgroups(&[to.gid]))?;
    step("gid", nix::unistd::setresgid(to.gid, to.gid, to.gid))?;
    step("uid", nix::unistd::setresuid(to.uid, to.uid, to.uid))?;
    step("permitted set", caps::set(None, CapSet::Permitted, &keep))?;
    step("effective set", caps::set(None, CapSet::Effective, &keep))?;
    step("keep capabilities", nix::sys::prctl::set_keepcaps(false))?;
    step("no new privileges", nix::sys::prctl::set_no_new_privs())?;
    verify(to, &keep)?;
    Ok(if keep.is_empty() {
        format!("running as {} (uid {}) with no capabilities", to.name, to.uid)
    } else {
        format!(
            "running as {} (uid {}) with only {} (to read other processes' /proc/PID/fd for host sampling); all other capabilities dropped, bounding set included",
            to.name,
            to.uid,
            names(&keep)
        )
    })
}

/// Gives up root for `to` (see [`drop_root`]), or, with no one to become, every capability but
/// `keep` (see [`drop_caps`]).
pub fn drop_to(to: Option<&Target>, keep: &[Capability]) -> Result<String, String> {
    match to {
        Some(t) => drop_root(t, keep),
        None => drop_caps(keep),
    }
}

/// Not root, but maybe given capabilities (`setcap cap_net_raw…`): keep only what sampling needs
/// of what we have.
pub(crate) fn drop_caps(keep: &[Capability]) -> Result<String, String> {
    let have = caps::read(None, CapSet::Permitted).map_err(|e| format!("could not read capabilities: {e}"))?;
    if have.is_empty() {
        return Ok("not running as root; no capabilities to drop".into());
    }
    let keep: CapsHashSet = keep.iter().copied().filter(|c| have.contains(c)).collect();
    step("ambient set", caps::clear(None, CapSet::Ambient))?;
    step("inheritable set", caps::clear(None, CapSet::Inheritable))?;
    step("effective set", caps::set(None, CapSet::Effective, &keep))?;
    step("permitted set", caps::set(None, CapSet::Permitted, &keep))?;
    step("no new privileges", nix::sys::prctl::set_no_new_privs())?;
    Ok(format!("not running as root; keeping only {}", names(&keep)))
}

fn verify(to: &Target, keep: &CapsHashSet) -> Result<(), String> {
    let (r, e, s) = (nix::unistd::getresuid(), nix::unistd::getuid(), nix::unistd::geteuid());
    let ids_ok = r.is_ok_and(|ids| ids.real == to.uid && ids.effective == to.uid && ids.saved == to.uid);
    let back = nix::unistd::setuid(Uid::from_raw(0)).is_ok();
    let eff = caps::read(None, CapSet::Effective).unwrap_or_default();
    let perm = caps::read(None, CapSet::Permitted).unwrap_or_default();
    if !ids_ok || e.is_root() || s.is_root() || back || &eff != keep || &perm != keep {
        return Err(format!(
            "could not drop privileges to {} (uid {e}, euid {s}, capabilities {}); stopping",
            to.name,
            names(&perm)
        ));
    }
    Ok(())
}
