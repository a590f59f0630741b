//! Logging of events worth a line (GPU errors and recoveries): stderr natively, the
//! console in the browser.

/// Logs an event (stderr natively, the console in the browser).
pub fn log(msg: &str) {
    #[cfg(target_arch = "wasm32")]
    web_sys::console::warn_1(&msg.into());
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{msg}");
}
