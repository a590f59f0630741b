//! The clock: milliseconds from an arbitrary origin, for timings and profiles.

/// Milliseconds from an arbitrary origin (`performance.now()` in the browser; the OS clock
/// natively and under WASI, where the unit tests run as wasm).
pub fn now_ms() -> f64 {
    #[cfg(all(target_arch = "wasm32", not(target_os = "wasi")))]
    {
        use wasm_bindgen::JsCast;
        let global = js_sys::global();
        js_sys::Reflect::get(&global, &"performance".into())
            .ok()
            .and_then(|p| {
                let now = js_sys::Reflect::get(&p, &"now".into()).ok()?.dyn_into::<js_sys::Function>().ok()?;
                now.call0(&p).ok()?.as_f64()
            })
            .unwrap_or_else(js_sys::Date::now)
    }
    #[cfg(any(not(target_arch = "wasm32"), target_os = "wasi"))]
    {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64() * 1e3
    }
}
