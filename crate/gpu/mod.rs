//! GPU access through wgpu (WebGPU in the browser; Vulkan/Metal/DX12 natively).
//!
//! This module finds an adapter and reports what it is and whether WGSL's
//! `packed_4x8_integer_dot_product` (`dot4I8Packed`) is available, which decides the int8
//! dot-product variant. [`context`] holds the device; [`kernel`] what every kernel shares;
//! [`gemm`], [`conv`], [`depthwise`], [`add`] and [`pool`] the WGSL kernels (bit-exact with the CPU
//! reference); the execution plan of a whole int8 network is [`crate::exec::gpu_plan`]. Everything here is
//! asynchronous so the same code runs in the browser; native callers block on it.

pub mod add;
pub mod context;
pub mod conv;
pub mod depthwise;
pub mod gemm;
pub mod gemm_f32;
pub mod kernel;
pub mod pool;
pub mod table;

use crate::base::error::{Error, Result};

/// What adapter was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterReport {
    /// Adapter name as the driver reports it (may be empty in browsers).
    pub name: String,
    /// Graphics API: "vulkan", "metal", "dx12", "webgpu", ...
    pub backend: String,
    /// "discrete", "integrated", "cpu" (a software rasterizer such as lavapipe/SwiftShader), ...
    pub device_type: String,
    /// WGSL `dot4I8Packed` is available.
    pub packed_int8_dot: bool,
}

impl AdapterReport {
    /// One line for logs and the page, e.g. `llvmpipe (vulkan, cpu), dot4I8Packed: yes`.
    pub fn describe(&self) -> String {
        let name = if self.name.is_empty() { "unnamed adapter" } else { &self.name };
        format!(
            "{name} ({}, {}), dot4I8Packed: {}",
            self.backend,
            self.device_type,
            if self.packed_int8_dot { "yes" } else { "no" }
        )
    }
}

/// Requests a high-performance adapter and reports it; an error when none exists.
pub async fn probe() -> Result<AdapterReport> {
    let (instance, adapter) = adapter().await?;
    Ok(report(&instance, &adapter))
}

/// A high-performance adapter (backends from `WGPU_BACKEND`), with its instance.
async fn adapter() -> Result<(wgpu::Instance, wgpu::Adapter)> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::Gpu(format!("no GPU adapter: {e}")))?;
    Ok((instance, adapter))
}

/// What `adapter` is and whether `instance` compiles WGSL's packed int8 dot product.
fn report(instance: &wgpu::Instance, adapter: &wgpu::Adapter) -> AdapterReport {
    let info = adapter.get_info();
    let device_type = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => "discrete",
        wgpu::DeviceType::IntegratedGpu => "integrated",
        wgpu::DeviceType::VirtualGpu => "virtual",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    };
    AdapterReport {
        name: info.name.clone(),
        backend: info.backend.to_str().to_string(),
        device_type: device_type.to_string(),
        packed_int8_dot: instance
            .wgsl_language_features()
            .contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct),
    }
}
