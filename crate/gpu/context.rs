//! The device and queue every GPU kernel runs on. Kernels never create a device: a
//! [`GpuContext`] is made once (here for the CLI and tests; the page will wrap the browser's)
//! and passed in. wgpu's default handler panics on an uncaptured error; the context installs
//! one that logs instead, and kernels wrap their own creation in error scopes so a bad
//! shader or a lost device becomes an [`Error::Gpu`], never a panic.

use std::sync::Arc;

use super::AdapterReport;
use crate::error::{Error, Result};

/// A device, its queue and what adapter it came from.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub report: AdapterReport,
}

impl GpuContext {
    /// Requests an adapter and a device with the adapter's own limits.
    pub async fn new() -> Result<Self> {
        let (instance, adapter) = super::adapter().await?;
        let report = super::report(&instance, &adapter);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("edgetune"),
                required_limits: adapter.limits(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("device request failed: {e}")))?;
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| eprintln!("edgetune: uncaptured GPU error: {e}")));
        Ok(GpuContext { device, queue, report })
    }
}
