//! Ctrl-C and SIGTERM: stop at the next batch and clean up.
//!
//! The handler only sets a flag. Operators and the pipeline check it once a
//! batch (through `RunContext::check`) and return `Error::Interrupted`, which
//! unwinds through the normal error path: temporary outputs and the spill
//! directory are removed by their owners' `Drop`. A second signal exits at
//! once; whatever it leaves (hidden temp names, a spill directory) is never
//! mistaken for output, and the next run sweeps the spill directory.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// Install the handlers for SIGINT and SIGTERM.
pub fn install() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only touches an atomic and calls _exit.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}
