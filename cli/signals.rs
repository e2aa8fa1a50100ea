//! SIGTERM (what Slurm sends at the time limit) and SIGINT (Ctrl-C) during `score` and
//! `search`: the first asks the run to stop cleanly (no further row, the arch in flight
//! finished, the file left whole to `--resume`); a second one exits at once.

use std::sync::atomic::{AtomicI32, Ordering};

/// The first signal received, 0 before.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

#[cfg(unix)]
extern "C" fn on_signal(signal: libc::c_int) {
    if RECEIVED.swap(signal, Ordering::SeqCst) != 0 {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(128 + signal) };
    }
}

/// Routes SIGTERM and SIGINT to the handler above.
pub fn install() {
    #[cfg(unix)]
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction with a handler that only touches an atomic and calls
        // _exit is valid; the handler lives for the whole program.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// The signal that asked the run to stop, if one did.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// The signal's name, for messages.
pub fn name(signal: i32) -> &'static str {
    #[cfg(unix)]
    match signal {
        libc::SIGTERM => return "SIGTERM",
        libc::SIGINT => return "SIGINT",
        _ => {}
    }
    "a signal"
}
