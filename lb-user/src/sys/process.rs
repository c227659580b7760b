//! Child processes lbd runs (health-check commands, `vrrp_script`s):
//! the user they run as, and their process group, killed as a whole when
//! a run times out or its task is dropped (keepalived: `kill(-pid, ...)`).

use std::ffi::{CString, c_char};
use std::io;

use tracing::warn;

/// A failed `user` lookup (for a script or a health-check command).
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The name contains a NUL byte.
    #[error("user name {user:?} contains a NUL byte")]
    InvalidName {
        /// The name as configured.
        user: String,
    },
    /// No such user in the password database.
    #[error("user {user:?} not found")]
    NotFound {
        /// The name as configured.
        user: String,
    },
    /// `getpwnam_r` failed.
    #[error("looking up user {user:?}")]
    Lookup {
        /// The name as configured.
        user: String,
        /// The errno `getpwnam_r` returned.
        #[source]
        source: io::Error,
    },
}

/// The uid and primary gid of `user`, via `getpwnam_r`.
///
/// # Errors
///
/// [`UserError::NotFound`] for an unknown user, [`UserError::InvalidName`]
/// for a name with a NUL byte, [`UserError::Lookup`] when the password
/// database cannot be read.
pub fn lookup_user(user: &str) -> Result<(u32, u32), UserError> {
    /// Bound on the buffer `getpwnam_r` may ask for through `ERANGE`.
    const MAX_BUF: usize = 1 << 20;

    let c_user = CString::new(user).map_err(|_| UserError::InvalidName {
        user: user.to_owned(),
    })?;
    let mut buf: Vec<c_char> = vec![0; 1024];
    loop {
        // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids).
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call and `buf.len()` is
        // the buffer's real length.
        let rc = unsafe {
            libc::getpwnam_r(
                c_user.as_ptr(),
                &raw mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &raw mut found,
            )
        };
        match rc {
            0 if found.is_null() => {
                return Err(UserError::NotFound {
                    user: user.to_owned(),
                });
            }
            0 => return Ok((pwd.pw_uid, pwd.pw_gid)),
            libc::ERANGE if buf.len() < MAX_BUF => buf.resize(buf.len() * 2, 0),
            // glibc reports "not found" as ENOENT/ESRCH/... from some NSS
            // modules; the man page lists them as "not found".
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => {
                return Err(UserError::NotFound {
                    user: user.to_owned(),
                });
            }
            errno => {
                return Err(UserError::Lookup {
                    user: user.to_owned(),
                    source: io::Error::from_raw_os_error(errno),
                });
            }
        }
    }
}

/// Kills a child's process group with SIGKILL on drop unless disarmed
/// (after the leader was reaped, when the group id may be reused).
pub struct GroupGuard(Option<i32>);

impl GroupGuard {
    /// A guard for the group led by `pid` (a child spawned with
    /// `process_group(0)`; `None` when it has already exited).
    #[must_use]
    pub fn new(pid: Option<u32>) -> Self {
        Self(pid.and_then(|p| i32::try_from(p).ok()))
    }

    /// SIGKILL the group now (once).
    pub fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: plain syscall; `-pgid` addresses the group we created
            // and whose leader we have not reaped yet.
            if unsafe { libc::kill(-pgid, libc::SIGKILL) } != 0 {
                let error = io::Error::last_os_error();
                // ESRCH: the whole group is already gone.
                if error.raw_os_error() != Some(libc::ESRCH) {
                    warn!(pgid, %error, "killing a process group failed");
                }
            }
        }
    }

    /// Do not kill: the leader was reaped, the group id may be reused.
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Run a notify hook in the background: `/bin/sh -c CMD` with `args`
/// appended as the command's arguments (keepalived appends them to the
/// script's). `owner` (the VRRP instance, sync group, service or backend)
/// names it in the logs. A failure is logged; the hook is not killed when
/// lbd exits (stop hooks outlive it).
pub fn run_hook(owner: &str, cmd: &str, args: &[&str]) {
    let script = if args.is_empty() {
        cmd.to_owned()
    } else {
        format!("{cmd} \"$@\"")
    };
    let mut command = tokio::process::Command::new("/bin/sh");
    command.arg("-c").arg(&script).arg("lbd-notify").args(args);
    command.kill_on_drop(false);
    let owner = owner.to_owned();
    let cmd = cmd.to_owned();
    match command.spawn() {
        Ok(mut child) => {
            tokio::spawn(async move {
                match child.wait().await {
                    Ok(status) if status.success() => {}
                    Ok(status) => warn!(%owner, hook = %cmd, %status, "notify hook failed"),
                    Err(e) => warn!(%owner, hook = %cmd, error = %e, "notify hook failed"),
                }
            });
        }
        Err(e) => warn!(%owner, hook = %cmd, error = %e, "cannot run notify hook"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_user_root_and_missing() {
        assert_eq!(lookup_user("root").unwrap(), (0, 0));
        assert!(matches!(
            lookup_user("lb-no-such-user-x"),
            Err(UserError::NotFound { .. })
        ));
        assert!(matches!(
            lookup_user("a\0b"),
            Err(UserError::InvalidName { .. })
        ));
    }
}
