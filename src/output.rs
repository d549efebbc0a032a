//! Output files (`-w`, its `.sockets.csv`, `--plot`, `sample -o`), written safely while root.
//!
//! Each output is first created as a new temporary file beside its final name with
//! `O_CREAT|O_EXCL|O_NOFOLLOW` (so no symlink or existing file is ever opened), given to the
//! invoking user through its descriptor under sudo (`fchown`, never by path), and only put in place
//! by [`Output::commit`]: without `--force` as a new link (`link(2)` fails if anything, even a
//! dangling symlink, has the name), with `--force` by `rename(2)`, which replaces the name and never
//! writes through it. A symlink at the final name is refused either way, so its target is never
//! touched. An output dropped before its commit removes its temporary file: a run that fails
//! before then leaves the disk as it was.

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// An output file being prepared under a temporary name.
#[derive(Debug)]
pub struct Output {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
    force: bool,
}

/// Why `path` may not be written, if it may not: a symlink, a directory or other non-regular file,
/// or (without `force`) anything at all.
pub(crate) fn check_target(path: &Path, force: bool) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot write {}: {e}", path.display())),
        Ok(m) if m.file_type().is_symlink() => {
            Err(format!("{} is a symbolic link; refusing to write through it", path.display()))
        }
        Ok(m) if !m.file_type().is_file() => {
            Err(format!("{} exists and is not a regular file; refusing to replace it", path.display()))
        }
        Ok(_) if !force => Err(format!("{} exists; pass --force to overwrite it", path.display())),
        Ok(_) => Ok(()),
    }
}

/// The invoking user under sudo (`SUDO_UID`, `SUDO_GID`), when we are root and can give files away.
fn sudo_owner() -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let id = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
    Some((id("SUDO_UID")?, id("SUDO_GID")?))
}

/// Gives an open file to the invoking user under sudo, by its descriptor.
pub(crate) fn give_to_invoking_user(f: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    if let Some((uid, gid)) = sudo_owner() {
        nix::unistd::fchown(
            f.as_raw_fd(),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(io::Error::from)?;
    }
    Ok(())
}

impl Output {
    /// Checks `path` and creates the temporary file beside it. Nothing at `path` is touched.
    pub fn create(path: &Path, force: bool) -> Result<Output, String> {
        check_target(path, force)?;
        let name = path.file_name().ok_or_else(|| format!("{} is not a file name", path.display()))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let mut last = None;
        for _ in 0..16 {
            let mut t = std::ffi::OsString::from(".");
            t.push(name);
            // Hard to guess, so that nobody sharing the directory can take the name first.
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            t.push(format!(".{}.{nanos:08x}{}.hcleak-tmp", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
            let tmp = dir.join(t);
            let r = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true) // O_CREAT|O_EXCL
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .mode(0o644)
                .open(&tmp);
            match r {
                Ok(file) => {
                    let out = Output { path: path.to_path_buf(), tmp, file: Some(file), force };
                    if let Some(f) = &out.file {
                        give_to_invoking_user(f)
                            .map_err(|e| format!("cannot give {} to the invoking user: {e}", path.display()))?;
                    }
                    return Ok(out);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(format!("cannot write {}: {e}", path.display())),
            }
        }
        Err(format!("cannot write {}: {}", path.display(), last.map_or_else(String::new, |e| e.to_string())))
    }

    /// The final name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, to write before the commit.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("an uncommitted output has its file")
    }

    /// Puts the file in place under its final name and hands back the open descriptor.
    pub fn commit(mut self) -> Result<File, String> {
        let p = self.path.display().to_string();
        if self.force {
            // Checked again: something may have appeared since. rename() never follows it anyway.
            check_target(&self.path, true)?;
            std::fs::rename(&self.tmp, &self.path).map_err(|e| format!("cannot write {p}: {e}"))?;
        } else {
            let exists = |e: &io::Error| e.kind() == io::ErrorKind::AlreadyExists;
            match std::fs::hard_link(&self.tmp, &self.path) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&self.tmp);
                }
                Err(e) if exists(&e) => return Err(format!("{p} exists; pass --force to overwrite it")),
                // A filesystem without hard links (FAT): a rename that refuses to replace.
                Err(e) => no_replace_rename(&self.tmp, &self.path).map_err(|e2| {
                    if exists(&e2) {
                        format!("{p} exists; pass --force to overwrite it")
                    } else {
                        format!("cannot write {p}: {e}")
                    }
                })?,
            }
        }
        let f = self.file.take().expect("an uncommitted output has its file");
        // The temporary name is gone (renamed or unlinked): nothing for Drop to clean up.
        self.tmp = PathBuf::new();
        Ok(f)
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn no_replace_rename(from: &Path, to: &Path) -> io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags};
    renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE).map_err(io::Error::from)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn no_replace_rename(_: &Path, _: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

impl Drop for Output {
    fn drop(&mut self) {
        if self.tmp.as_os_str().is_empty() {
            return;
        }
        // Only our own file: the name is removed if it still is the file we created.
        if let (Some(f), Ok(m)) = (&self.file, std::fs::symlink_metadata(&self.tmp)) {
            if f.metadata().is_ok_and(|o| o.ino() == m.ino() && o.dev() == m.dev()) {
                let _ = std::fs::remove_file(&self.tmp);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hcleak-output-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn nothing_appears_until_commit_and_an_uncommitted_output_leaves_no_trace() {
        let d = dir("uncommitted");
        let p = d.join("a.svg");
        {
            let mut o = Output::create(&p, false).unwrap();
            o.file().write_all(b"x").unwrap();
            assert!(!p.exists());
        }
        assert!(names(&d).is_empty(), "{:?}", names(&d));
        let mut o = Output::create(&p, false).unwrap();
        o.file().write_all(b"hello").unwrap();
        drop(o.commit().unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");
        assert_eq!(names(&d), vec!["a.svg"]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn existing_files_need_force_and_symlinks_are_refused_even_with_it() {
        let d = dir("refuse");
        let victim = d.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let link = d.join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let dangling = d.join("dangling");
        std::os::unix::fs::symlink(d.join("nowhere"), &dangling).unwrap();
        for force in [false, true] {
            for p in [&link, &dangling] {
                let e = Output::create(p, force).unwrap_err();
                assert!(e.contains("symbolic link"), "{e}");
            }
        }
        assert!(Output::create(&victim, false).unwrap_err().contains("--force"));
        assert!(Output::create(&d, true).unwrap_err().contains("not a regular file"));
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(!d.join("nowhere").exists());
        // --force replaces the file by rename: a new inode, the old content whole until then.
        let mut o = Output::create(&victim, true).unwrap();
        o.file().write_all(b"new").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        drop(o.commit().unwrap());
        assert_eq!(std::fs::read(&victim).unwrap(), b"new");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_symlink_planted_before_commit_is_not_followed() {
        let d = dir("race");
        let victim = d.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let p = d.join("out.pcap");
        let mut o = Output::create(&p, false).unwrap();
        o.file().write_all(b"data").unwrap();
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        assert!(o.commit().unwrap_err().contains("exists"));
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        let _ = std::fs::remove_dir_all(&d);
    }
}
