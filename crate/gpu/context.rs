//! The device and queue every GPU kernel runs on. Kernels never create a device: a
//! [`GpuContext`] is made once (by the CLI, the tests or the page's engine) and passed in.
//! wgpu's default handler panics on an uncaptured error; the context installs one that logs
//! instead, and kernels wrap their own work in error scopes so a bad shader or a lost device
//! becomes an [`Error::Gpu`], never a panic. A lost device sets a flag the engine checks to
//! rebuild or fall back to the CPU.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::AdapterReport;
use crate::base::error::{Error, Result};

/// A device, its queue and what adapter it came from.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub report: AdapterReport,
    /// Timestamp queries were granted (per-layer GPU timing in benchmarks).
    pub timestamps: bool,
    lost: Arc<AtomicBool>,
}

impl GpuContext {
    /// Requests an adapter and a device with the adapter's own limits.
    pub async fn new() -> Result<Self> {
        let (instance, adapter) = super::adapter().await?;
        let report = super::report(&instance, &adapter);
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("edgetune"),
                required_limits: adapter.limits(),
                required_features: if timestamps { wgpu::Features::TIMESTAMP_QUERY } else { wgpu::Features::empty() },
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("device request failed: {e}")))?;
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            crate::base::log::log(&format!("edgetune: uncaptured GPU error: {e}"));
        }));
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            flag.store(true, Ordering::SeqCst);
            crate::base::log::log(&format!("edgetune: GPU device lost ({reason:?}): {msg}"));
        });
        Ok(GpuContext { device, queue, report, timestamps, lost })
    }

    /// The device was lost (driver reset, browser reclaiming it, `destroy()`): every buffer
    /// and pipeline made on it is gone and must be rebuilt on a new context.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Destroys the device (tests of the lost-device path).
    pub fn destroy(&self) {
        self.device.destroy();
    }
}
