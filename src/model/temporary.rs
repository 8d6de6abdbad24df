//! The temporary file an output is written to before it replaces OUT, and its cleanup when the
//! tool is interrupted.
//!
//! On Linux the file is created unnamed (`O_TMPFILE`) and linked into OUT's directory only once it
//! is complete, just before the rename over OUT: a crash or SIGKILL while it is written leaves
//! nothing behind. Where the file system refuses `O_TMPFILE` (or `/proc` is not mounted), and on
//! other systems, it is a named `.posefix-XXXXXX.tmp` file in OUT's directory, as before. Either
//! way a named temporary is listed in [`PENDING`] while it exists, and
//! [`remove_temporaries_on_interrupt`] (which the binary installs) removes what is listed when
//! SIGINT or SIGTERM arrives, then exits with 130 or 143. A rename holds the list's lock, so an
//! interrupt finds each temporary either still listed (removed, OUT untouched) or renamed (OUT
//! whole).
//!
//! Two environment variables exist for the tests of this (`tests/it/interrupt.rs`) and do nothing
//! else: `POSEFIX_TEST_NAMED_TEMPORARY` forces the named form, and `POSEFIX_TEST_PAUSE_MS` sleeps
//! that long once the temporary file exists, so that a signal can be sent while it does. Both are
//! read only with the `testing` feature, which the crate's dev-dependency on itself turns on for
//! test builds (and so for the binary `cargo test` runs); a `cargo build` or `cargo install`
//! binary does not know them: their names are not even in it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Named temporary files that exist now and are not OUT yet.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn pending() -> MutexGuard<'static, Vec<PathBuf>> {
    // A panic elsewhere while the lock was held leaves a list that is still right.
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts a thread that, on SIGINT or SIGTERM, removes the pending temporary files and exits with
/// 128 + the signal (130, 143), as a shell reports an interrupted command. For the binary: a
/// library caller keeps its own signal handling.
pub fn remove_temporaries_on_interrupt() -> io::Result<()> {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        std::thread::Builder::new().name("posefix-signals".into()).spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let list = pending();
                for path in list.iter() {
                    let _ = fs::remove_file(path);
                }
                std::process::exit(128 + signal);
            }
        })?;
    }
    Ok(())
}

/// A file being written in OUT's directory.
pub(crate) enum Temporary {
    /// Not linked anywhere until [`Temporary::persist`].
    #[cfg(target_os = "linux")]
    Unnamed { file: fs::File, dir: PathBuf },
    /// `.posefix-XXXXXX.tmp`, listed in [`PENDING`] while `listing` lives.
    Named { file: tempfile::NamedTempFile, listing: Listing },
}

/// A path's entry in [`PENDING`], taken out when dropped.
pub(crate) struct Listing(PathBuf);

impl Drop for Listing {
    fn drop(&mut self) {
        pending().retain(|p| *p != self.0);
    }
}

fn builder() -> tempfile::Builder<'static, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".posefix-").suffix(".tmp");
    // A new OUT gets what any file a user creates gets, 0666 less the umask (the temporary file's
    // own default, 0600, would survive the rename and lock others out).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    builder
}

impl Temporary {
    pub(crate) fn create_in(dir: &Path) -> io::Result<Temporary> {
        let temporary = match Self::unnamed_in(dir) {
            Some(t) => t,
            None => {
                let mut list = pending();
                let file = builder().tempfile_in(dir)?;
                list.push(file.path().to_path_buf());
                Temporary::Named { listing: Listing(file.path().to_path_buf()), file }
            }
        };
        test_hooks::pause();
        Ok(temporary)
    }

    #[cfg(target_os = "linux")]
    fn unnamed_in(dir: &Path) -> Option<Temporary> {
        use std::os::unix::fs::OpenOptionsExt;
        if test_hooks::named_temporary() || !Path::new("/proc/self/fd").is_dir() {
            return None;
        }
        // The mode, less the umask, is the file's from the start, as for a named file.
        let file = fs::OpenOptions::new().write(true).mode(0o666).custom_flags(libc::O_TMPFILE).open(dir).ok()?;
        Some(Temporary::Unnamed { file, dir: dir.to_path_buf() })
    }

    #[cfg(not(target_os = "linux"))]
    fn unnamed_in(_: &Path) -> Option<Temporary> {
        None
    }

    pub(crate) fn file(&self) -> &fs::File {
        match self {
            #[cfg(target_os = "linux")]
            Temporary::Unnamed { file, .. } => file,
            Temporary::Named { file, .. } => file.as_file(),
        }
    }

    pub(crate) fn file_mut(&mut self) -> &mut fs::File {
        match self {
            #[cfg(target_os = "linux")]
            Temporary::Unnamed { file, .. } => file,
            Temporary::Named { file, .. } => file.as_file_mut(),
        }
    }

    /// Renames the finished file over `path`. An unnamed file is first linked into its directory
    /// under a fresh temporary name. Both under the lock an interrupt takes.
    pub(crate) fn persist(self, path: &Path) -> io::Result<()> {
        let mut list = pending();
        match self {
            #[cfg(target_os = "linux")]
            Temporary::Unnamed { file, dir } => {
                builder().make_in(&dir, |at| link(&file, at))?.persist(path).map_err(|e| e.error)
            }
            Temporary::Named { file, listing } => {
                // On failure the temporary file is dropped, which removes it.
                let renamed = file.persist(path).map(drop).map_err(|e| e.error);
                list.retain(|p| *p != listing.0);
                drop(list);
                renamed
            }
        }
    }
}

/// Gives the unnamed `file` the name `at` (`linkat` through `/proc/self/fd`, which needs no
/// privilege, unlike `AT_EMPTY_PATH`).
#[cfg(target_os = "linux")]
fn link(file: &fs::File, at: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::io::AsRawFd;
    let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let to = CString::new(at.as_os_str().as_bytes())?;
    // SAFETY: both are NUL-terminated paths that outlive the call.
    let linked =
        unsafe { libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW) };
    if linked == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The hooks `tests/it/interrupt.rs` drives through the environment, with the `testing` feature.
#[cfg(feature = "testing")]
mod test_hooks {
    /// Sleeps `POSEFIX_TEST_PAUSE_MS` milliseconds, if set: the temporary file exists meanwhile.
    pub(super) fn pause() {
        if let Some(ms) = std::env::var("POSEFIX_TEST_PAUSE_MS").ok().and_then(|v| v.parse().ok()) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }

    /// `POSEFIX_TEST_NAMED_TEMPORARY` set: the named form even where the unnamed one works.
    #[cfg(target_os = "linux")]
    pub(super) fn named_temporary() -> bool {
        std::env::var_os("POSEFIX_TEST_NAMED_TEMPORARY").is_some()
    }
}

/// Without the `testing` feature (the shipped binary) the hooks are nothing: the variables are
/// never read, and their names are not in the binary.
#[cfg(not(feature = "testing"))]
mod test_hooks {
    pub(super) fn pause() {}

    #[cfg(target_os = "linux")]
    pub(super) fn named_temporary() -> bool {
        false
    }
}
