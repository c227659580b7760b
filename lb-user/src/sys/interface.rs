//! Network interfaces by name: index, link flags and MAC, in the calling
//! thread's network namespace.

use std::ffi::{CString, c_char, c_int};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// No interface of that name in this network namespace.
#[derive(Debug, thiserror::Error)]
#[error("no interface named {name:?}")]
pub struct NoSuchInterface {
    /// The name looked up.
    pub name: String,
}

/// Index of interface `name` (`if_nametoindex`).
///
/// # Errors
/// [`NoSuchInterface`], also for a name that cannot be one (NUL byte).
pub fn ifindex(name: &str) -> Result<u32, NoSuchInterface> {
    let missing = || NoSuchInterface {
        name: name.to_owned(),
    };
    let c_name = CString::new(name).map_err(|_| missing())?;
    // SAFETY: c_name is a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => Err(missing()),
        index => Ok(index),
    }
}

/// Whether interface `name` is up and running (`IFF_UP` and `IFF_RUNNING`)
/// in the current network namespace, via `ioctl(SIOCGIFFLAGS)` on a
/// datagram socket (not sysfs: lbd may run in a network namespace without
/// its own `/sys`).
///
/// keepalived's test is the same (`IF_FLAGS_UP` in `vrrp_if.h`). The
/// namespace is that of the calling thread.
///
/// # Errors
///
/// A nonexistent interface is an error, not `Ok(false)`: its
/// `raw_os_error()` is `Some(libc::ENODEV)`. A name that cannot be an
/// interface name (empty, `IFNAMSIZ` bytes or longer, NUL byte) is
/// [`io::ErrorKind::InvalidInput`]. Other errors come from `socket` or
/// `ioctl`.
pub fn interface_up(name: &str) -> io::Result<bool> {
    let flags = interface_flags(name)?;
    let wanted = libc::IFF_UP | libc::IFF_RUNNING;
    Ok(flags & wanted == wanted)
}

fn interface_flags(name: &str) -> io::Result<c_int> {
    let req = ifreq_ioctl(name, libc::SIOCGIFFLAGS)?;
    // SAFETY: SIOCGIFFLAGS filled in `ifru_flags`.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    Ok(c_int::from(u16::from_ne_bytes(flags.to_ne_bytes())))
}

/// The MAC address of interface `name` (`ioctl(SIOCGIFHWADDR)`), in the
/// calling thread's network namespace.
///
/// # Errors
/// As [`interface_up`]; an interface whose hardware address is not
/// Ethernet's is [`io::ErrorKind::Unsupported`].
pub fn mac_address(name: &str) -> io::Result<[u8; 6]> {
    let req = ifreq_ioctl(name, libc::SIOCGIFHWADDR)?;
    // SAFETY: SIOCGIFHWADDR filled in `ifru_hwaddr`.
    let addr = unsafe { req.ifr_ifru.ifru_hwaddr };
    if addr.sa_family != libc::ARPHRD_ETHER {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{name} is not an Ethernet interface"),
        ));
    }
    let mut mac = [0; 6];
    for (dst, &src) in mac.iter_mut().zip(&addr.sa_data) {
        *dst = u8::from_ne_bytes(src.to_ne_bytes());
    }
    Ok(mac)
}

/// `ioctl(request)` about interface `name` on a datagram socket: the
/// `ifreq` the kernel filled in.
fn ifreq_ioctl(name: &str, request: libc::c_ulong) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a valid interface name"),
        ));
    }
    // SAFETY: plain syscall.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };

    // SAFETY: all-zero is a valid `ifreq` (empty name, zero union).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // The name fits with its NUL terminator (checked above).
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = c_char::from_ne_bytes([src]);
    }
    // SAFETY: `req` is a valid `ifreq` that these requests read the name
    // of and write their answer into.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), request, &raw mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_up() {
        assert!(interface_up("lo").unwrap());
    }

    #[test]
    fn missing_interface_is_enodev() {
        let error = interface_up("lbtrk-nonexist").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENODEV));
    }

    #[test]
    fn invalid_interface_names_are_rejected() {
        for name in ["", "a-name-that-is-too-long", "a\0b"] {
            let error = interface_up(name).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
    }

    #[test]
    fn loopback_has_no_mac_and_nothing_has_none() {
        assert_eq!(
            mac_address("lo").unwrap_err().kind(),
            io::ErrorKind::Unsupported
        );
        assert_eq!(
            mac_address("lbtrk-nonexist").unwrap_err().raw_os_error(),
            Some(libc::ENODEV)
        );
    }

    #[test]
    fn ifindex_of_loopback_and_of_nothing() {
        assert_eq!(ifindex("lo").unwrap(), 1);
        assert_eq!(
            ifindex("lbtrk-nonexist").unwrap_err().to_string(),
            "no interface named \"lbtrk-nonexist\""
        );
        assert!(ifindex("a\0b").is_err());
    }
}
