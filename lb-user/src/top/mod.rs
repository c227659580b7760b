//! `lbctl top` (a live view of services, backends, VRRP and sync) and
//! `lbctl stats --rate` (the same rates printed once).
//!
//! Three parts, so that all but the terminal is tested without one:
//! - [`rates`]: counters of two samples into per-second rates, with
//!   restarts and services coming and going handled (pure);
//! - [`view`]: lbd's answers and the rates joined into the rows on screen,
//!   and what is kept from one refresh to the next (pure);
//! - [`render`]: a [`view::Screen`] drawn with ratatui.
//!
//! This module adds the socket and the terminal: [`fetch`] asks lbd
//! `status`, `backends`, `vrrp` and `stats`; [`run`] refreshes on a
//! thread of its own every interval (so keys are read at once even when
//! lbd is slow to answer), redraws on each refresh and on resize, and
//! quits on `q`, Esc or Ctrl-C (and on SIGTERM, SIGINT, SIGHUP). The
//! terminal (raw mode, alternate screen) is restored however it ends: a
//! quit, a signal, an error, or a panic (ratatui's panic hook). lbd going away is shown, not fatal: the
//! screen says `lbd unreachable: ...` and the refreshes go on until it
//! answers again.

pub mod rates;
pub mod render;
pub mod view;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::api::control::{self, DecodeError, Request};
use view::{Snapshot, Top};

/// How long one refresh may take (all four requests) before it counts as
/// lbd not answering.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One request, its answer decoded.
async fn ask<T: serde::de::DeserializeOwned>(
    socket: &Path,
    request: &Request,
) -> Result<T, String> {
    let response = control::request(socket, request)
        .await
        .map_err(|e| e.to_string())?;
    response.decode().map_err(|e| match e {
        DecodeError::Refused { message } => format!("lbd refused the request: {message}"),
        e @ DecodeError::Unexpected { .. } => crate::dataplane::loader::error_chain(&e),
    })
}

/// Ask lbd at `socket` for one [`Snapshot`].
///
/// # Errors
/// Why there is none: lbd cannot be reached, refused a request, or sent
/// an answer this lbctl cannot read. (`stats` refused because lbd runs no
/// data plane is not an error: the snapshot has no traffic then.)
pub async fn fetch(socket: &Path) -> Result<Snapshot, String> {
    let status = ask(socket, &Request::Status).await?;
    let services = ask(socket, &Request::Backends).await?;
    let vrrp = ask(socket, &Request::Vrrp).await?;
    let response = control::request(socket, &Request::Stats)
        .await
        .map_err(|e| e.to_string())?;
    let at = Instant::now();
    let traffic = match response.decode() {
        Ok(t) => Some((at, t)),
        Err(DecodeError::Refused { .. }) => None,
        Err(e) => return Err(crate::dataplane::loader::error_chain(&e)),
    };
    Ok(Snapshot {
        status,
        services,
        vrrp,
        traffic,
    })
}

/// Refresh every `interval` on this thread until `tx`'s receiver goes.
fn refresher(socket: &Path, interval: Duration, tx: &mpsc::Sender<Result<Snapshot, String>>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _gone = tx.send(Err(format!("cannot start the async runtime: {e}")));
            return;
        }
    };
    loop {
        let started = Instant::now();
        let result = runtime.block_on(async {
            tokio::time::timeout(FETCH_TIMEOUT, fetch(socket))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {FETCH_TIMEOUT:?}")))
        });
        if tx.send(result).is_err() {
            return;
        }
        std::thread::sleep(interval.saturating_sub(started.elapsed()));
    }
}

/// Whether `key` quits: `q`, Esc, Ctrl-C.
fn quits(key: &event::KeyEvent) -> bool {
    key.kind == KeyEventKind::Press
        && (matches!(key.code, KeyCode::Char('q' | 'Q') | KeyCode::Esc)
            || (key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL)))
}

/// Leaves raw mode and the alternate screen when dropped.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// `lbctl top`: the live view of lbd at `socket`, refreshed every
/// `interval`, until a quitting key or SIGTERM, SIGINT or SIGHUP.
///
/// # Errors
/// The terminal cannot be set up (not a terminal) or written to.
pub fn run(socket: &Path, interval: Duration) -> std::io::Result<()> {
    let (tx, rx) = mpsc::channel();
    {
        let socket = socket.to_owned();
        std::thread::Builder::new()
            .name("lbctl-top-refresh".into())
            .spawn(move || refresher(&socket, interval, &tx))?;
    }
    // A signal quits as q does: the loop sees the flag within 50 ms and
    // the terminal is restored on the way out.
    let signalled = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT, SIGHUP] {
        signal_hook::flag::register(signal, Arc::clone(&signalled))?;
    }
    // Installs a panic hook that restores the terminal first.
    let mut terminal = ratatui::try_init()?;
    let _restore = Restore;
    let mut top = Top::default();
    let mut screen = view::Screen {
        title: format!("connecting to {}", socket.display()),
        ..view::Screen::default()
    };
    let mut dirty = true;
    while !signalled.load(Ordering::Relaxed) {
        loop {
            match rx.try_recv() {
                Ok(result) => {
                    screen = top.update(result);
                    dirty = true;
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err(std::io::Error::other("the refresh thread stopped"));
                }
            }
        }
        if dirty {
            terminal.draw(|f| render::draw(f, &screen, interval))?;
            dirty = false;
        }
        // Keys within 50 ms; a refresh within 50 ms of its arrival.
        if event::poll(Duration::from_millis(50))? {
            match event::read()? {
                Event::Key(key) if quits(&key) => return Ok(()),
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quitting_keys() {
        let key = |code, modifiers| event::KeyEvent::new(code, modifiers);
        assert!(quits(&key(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(quits(&key(KeyCode::Esc, KeyModifiers::NONE)));
        assert!(quits(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(!quits(&key(KeyCode::Char('c'), KeyModifiers::NONE)));
        assert!(!quits(&key(KeyCode::Char('x'), KeyModifiers::NONE)));
        let mut release = key(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert!(!quits(&release));
    }

    /// No lbd at the socket: an error naming the socket, not a hang.
    #[test]
    fn fetch_from_nowhere_says_unreachable() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = runtime
            .block_on(fetch(Path::new("/nonexistent/lbd.sock")))
            .unwrap_err();
        assert!(
            err.contains("cannot reach lbd at /nonexistent/lbd.sock"),
            "{err}"
        );
    }
}
