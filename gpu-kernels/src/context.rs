//! The wgpu context: instance, adapter and device, built once per process.
//!
//! Input: the `WGPU_BACKEND` environment variable (a comma list such as `vulkan`, `gl`; default
//! the primary backends). Output: a [`GpuContext`] holding the device, its queue, the limits the
//! kernels chunk against and an [`AdapterReport`] that says honestly whether the adapter is a
//! real GPU or a CPU driver (lavapipe/llvmpipe, SwiftShader, WARP). Next stage: the scorers in
//! [`crate::score`] and the sweep kernels build their pipelines on it with the helpers below.
//!
//! # Helpers for compute kernels
//!
//! Every kernel in this crate follows the same shape, which the helpers cover:
//!
//! 1. [`GpuContext::pipeline`] compiles a WGSL entry point once into a [`ComputeKernel`]
//!    (bind group 0, layout derived from the shader).
//! 2. [`GpuContext::storage_buffer`] / [`GpuContext::storage_buffer_zeroed`] /
//!    [`GpuContext::uniform_buffer`] create the buffers (size checked against the binding limit,
//!    [`GpuContext::max_binding_bytes`]; chunk larger inputs).
//! 3. [`GpuContext::dispatch`] binds `buffers[i]` to `@binding(i)` of group 0 and runs
//!    `workgroups` (each ≤ [`GpuContext::max_workgroups_per_dimension`]).
//! 4. [`GpuContext::read_back`] copies a buffer into a [`Readback`] staging buffer (reused
//!    across calls, grown on demand) and returns the values as a `Vec<T>`.
//!
//! Every step returns `Result<_, GpuError>`: wgpu validation and out-of-memory errors are caught
//! with error scopes, anything that escapes them is recorded by the device's uncaptured-error
//! handler (never a panic) and reported by the next call.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, mpsc};

use bytemuck::Pod;

/// Errors from the GPU context and kernels. Cloneable so that a failed [`GpuContext::shared`]
/// can be cached and returned again.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    /// No adapter matched the requested backends (none installed, or `WGPU_BACKEND` excludes it).
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    /// The adapter refused to create a device.
    #[error("cannot create the GPU device: {0}")]
    RequestDevice(String),
    /// wgpu rejected a call: a shader, pipeline, binding or dispatch that does not validate.
    #[error("GPU validation error: {0}")]
    Validation(String),
    /// The device ran out of memory.
    #[error("GPU out of memory: {0}")]
    OutOfMemory(String),
    /// An internal driver or wgpu error (including a lost device).
    #[error("GPU internal error: {0}")]
    Internal(String),
    /// Mapping a buffer for read-back failed, or waiting for the device failed.
    #[error("GPU buffer read-back failed: {0}")]
    Map(String),
    /// A buffer or dispatch exceeds the device's limits.
    #[error("{what} needs {needed}, the device allows {limit}")]
    TooLarge {
        /// What was too large (a buffer label, "workgroups").
        what: String,
        /// Requested amount (bytes or workgroups).
        needed: u64,
        /// The device limit.
        limit: u64,
    },
    /// A model or kernel shape this GPU path does not support (the CPU path does).
    #[error("not supported on the GPU: {0}")]
    Unsupported(String),
}

/// Which adapter the context runs on, reported to users so that a CPU driver is never taken
/// for a GPU. `Display`: `NAME (Vulkan, discrete GPU)` or `llvmpipe … (Vulkan, CPU driver)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterReport {
    /// The adapter's name as the driver gives it.
    pub name: String,
    /// Graphics API backend (Vulkan, GL, Metal, DX12).
    pub backend: wgpu::Backend,
    /// Device type reported by the driver.
    pub device_type: wgpu::DeviceType,
    /// True for software implementations (device type `Cpu`, or a known software driver name):
    /// these run shaders on the host CPU and are not faster than the CPU scorer.
    pub is_cpu: bool,
}

impl AdapterReport {
    fn from_info(info: &wgpu::AdapterInfo) -> AdapterReport {
        let lower = info.name.to_lowercase();
        // Some software drivers report themselves as "Other" or even integrated: check names too.
        let soft_name = [
            "llvmpipe",
            "lavapipe",
            "softpipe",
            "swiftshader",
            "warp",
            "microsoft basic render",
        ]
        .iter()
        .any(|s| lower.contains(s));
        AdapterReport {
            name: info.name.clone(),
            backend: info.backend,
            device_type: info.device_type,
            is_cpu: info.device_type == wgpu::DeviceType::Cpu || soft_name,
        }
    }
}

impl fmt::Display for AdapterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.backend {
            wgpu::Backend::Vulkan => "Vulkan",
            wgpu::Backend::Metal => "Metal",
            wgpu::Backend::Dx12 => "DX12",
            wgpu::Backend::Gl => "GL",
            wgpu::Backend::BrowserWebGpu => "WebGPU",
            wgpu::Backend::Noop => "no-op",
        };
        let kind = if self.is_cpu {
            "CPU driver"
        } else {
            match self.device_type {
                wgpu::DeviceType::DiscreteGpu => "discrete GPU",
                wgpu::DeviceType::IntegratedGpu => "integrated GPU",
                wgpu::DeviceType::VirtualGpu => "virtual GPU",
                wgpu::DeviceType::Cpu => "CPU driver",
                wgpu::DeviceType::Other => "GPU",
            }
        };
        write!(f, "{} ({backend}, {kind})", self.name)
    }
}

/// Errors that escaped every error scope, recorded by the device's handler.
type ErrorLog = Arc<Mutex<Vec<GpuError>>>;

/// The process-wide GPU context: device, queue, limits and adapter report.
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    limits: wgpu::Limits,
    adapter: AdapterReport,
    uncaptured: ErrorLog,
}

impl fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.adapter)
            .finish_non_exhaustive()
    }
}

static SHARED: OnceLock<Result<GpuContext, GpuError>> = OnceLock::new();

fn convert_error(e: wgpu::Error) -> GpuError {
    match e {
        wgpu::Error::OutOfMemory { source } => GpuError::OutOfMemory(source.to_string()),
        wgpu::Error::Validation { description, .. } => GpuError::Validation(description),
        wgpu::Error::Internal { description, .. } => GpuError::Internal(description),
    }
}

impl GpuContext {
    /// The shared context, built on first use. The outcome (also a failure) is cached for the
    /// life of the process, so a machine without an adapter pays for the probe once.
    pub fn shared() -> Result<&'static GpuContext, GpuError> {
        SHARED
            .get_or_init(GpuContext::new)
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Builds a new context (prefer [`GpuContext::shared`]; a second device costs memory and
    /// start-up time). Backends from `WGPU_BACKEND`, else the primary ones.
    pub fn new() -> Result<GpuContext, GpuError> {
        let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
        if backends.is_empty() {
            return Err(GpuError::NoAdapter(
                "WGPU_BACKEND names no known backend".into(),
            ));
        }
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.backends = backends;
        let instance = wgpu::Instance::new(desc);
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            apply_limit_buckets: false,
        }))
        .map_err(|e| GpuError::NoAdapter(format!("{e} (backends {backends:?})")))?;
        let report = AdapterReport::from_info(&adapter.get_info());
        // Ask for everything the adapter offers: row chunks are sized to the binding limit, and
        // the WebGPU defaults (128 MiB bindings) would cut large batches needlessly.
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("strix"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| GpuError::RequestDevice(format!("{}: {e}", report.name)))?;
        let uncaptured: ErrorLog = Arc::default();
        let log = Arc::clone(&uncaptured);
        // wgpu's default handler panics; record instead and report from the next call.
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = log.lock() {
                v.push(convert_error(e));
            }
        }));
        let limits = device.limits();
        Ok(GpuContext {
            device,
            queue,
            limits,
            adapter: report,
            uncaptured,
        })
    }

    /// The adapter this context runs on.
    pub fn adapter(&self) -> &AdapterReport {
        &self.adapter
    }

    /// The wgpu device (for kernels that need more than the helpers).
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// The device limits (the adapter's own, requested in full).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The largest storage buffer one binding may cover, in bytes: chunk inputs to this.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// The most workgroups one dispatch may have along one dimension (65535 on most devices).
    pub fn max_workgroups_per_dimension(&self) -> u32 {
        self.limits.max_compute_workgroups_per_dimension
    }

    /// Runs `f` inside validation and out-of-memory error scopes, then reports the first error
    /// captured, or one recorded by the uncaptured handler meanwhile.
    pub fn scoped<R>(&self, f: impl FnOnce() -> R) -> Result<R, GpuError> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let r = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        if let Some(e) = v.or(o) {
            return Err(convert_error(e));
        }
        self.take_uncaptured()?;
        Ok(r)
    }

    /// Returns (and clears) the first error that escaped every error scope, if any.
    pub fn take_uncaptured(&self) -> Result<(), GpuError> {
        let mut log = self
            .uncaptured
            .lock()
            .map_err(|_| GpuError::Internal("error log poisoned".into()))?;
        match log.drain(..).next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Compiles `wgsl` and builds a compute pipeline for `entry` with a layout derived from the
    /// shader (bind group 0). Shader and pipeline errors come back as [`GpuError::Validation`].
    pub fn pipeline(
        &self,
        label: &str,
        wgsl: &str,
        entry: &str,
    ) -> Result<ComputeKernel, GpuError> {
        let pipeline = self.scoped(|| {
            let module = self
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(label),
                    source: wgpu::ShaderSource::Wgsl(Cow::Borrowed(wgsl)),
                });
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(label),
                    layout: None,
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: wgpu::PipelineCompilationOptions::default(),
                    cache: None,
                })
        })?;
        let layout = self.scoped(|| pipeline.get_bind_group_layout(0))?;
        Ok(ComputeKernel {
            pipeline,
            layout,
            label: label.to_string(),
        })
    }

    fn check_size(&self, label: &str, bytes: u64) -> Result<(), GpuError> {
        let limit = self.max_binding_bytes();
        if bytes > limit {
            return Err(GpuError::TooLarge {
                what: format!("buffer {label:?} (bytes)"),
                needed: bytes,
                limit,
            });
        }
        Ok(())
    }

    fn buffer(
        &self,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer, GpuError> {
        self.check_size(label, size)?;
        // Bindings must not be empty, and copies are in multiples of 4 bytes.
        let size = size.max(4).next_multiple_of(4);
        self.scoped(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        })
    }

    /// A storage buffer holding `data` (usable as `var<storage, read>` or `read_write`, as a copy
    /// source for [`GpuContext::read_back`] and a copy destination for `queue().write_buffer`).
    pub fn storage_buffer<T: Pod>(
        &self,
        label: &str,
        data: &[T],
    ) -> Result<wgpu::Buffer, GpuError> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        // An empty array still binds one element: a shader's `array<T>` binding needs at least
        // `size_of::<T>()` bytes (e.g. a tree ensemble with no trees has no nodes).
        let min = std::mem::size_of::<T>().max(4);
        let buf = self.storage_buffer_zeroed(label, bytes.len().max(min) as u64)?;
        if !bytes.is_empty() {
            self.write(&buf, 0, bytes)?;
        }
        Ok(buf)
    }

    /// A zero-filled storage buffer of `bytes` bytes (rounded up to a multiple of 4, at least 4).
    pub fn storage_buffer_zeroed(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer, GpuError> {
        use wgpu::BufferUsages as U;
        self.buffer(label, bytes, U::STORAGE | U::COPY_DST | U::COPY_SRC)
    }

    /// A uniform buffer holding `data` (sizes of uniform structs are multiples of 16 bytes).
    pub fn uniform_buffer<T: Pod>(
        &self,
        label: &str,
        data: &[T],
    ) -> Result<wgpu::Buffer, GpuError> {
        use wgpu::BufferUsages as U;
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let buf = self.buffer(label, bytes.len() as u64, U::UNIFORM | U::COPY_DST)?;
        if !bytes.is_empty() {
            self.write(&buf, 0, bytes)?;
        }
        Ok(buf)
    }

    /// Writes `data` into `buffer` at `offset` (bytes; both multiples of 4).
    pub fn write(&self, buffer: &wgpu::Buffer, offset: u64, data: &[u8]) -> Result<(), GpuError> {
        self.scoped(|| self.queue.write_buffer(buffer, offset, data))
    }

    /// A bind group for `kernel` binding `buffers[i]` (whole buffer) to `@binding(i)`.
    pub fn bind(
        &self,
        kernel: &ComputeKernel,
        buffers: &[&wgpu::Buffer],
    ) -> Result<wgpu::BindGroup, GpuError> {
        let entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.scoped(|| {
            self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(&kernel.label),
                layout: &kernel.layout,
                entries: &entries,
            })
        })
    }

    fn check_workgroups(&self, workgroups: [u32; 3]) -> Result<(), GpuError> {
        let limit = self.max_workgroups_per_dimension();
        if let Some(&w) = workgroups.iter().find(|&&w| w > limit) {
            return Err(GpuError::TooLarge {
                what: "workgroups per dimension".into(),
                needed: w.into(),
                limit: limit.into(),
            });
        }
        Ok(())
    }

    /// Records a dispatch of `kernel` with `bind_group` into `encoder` (for callers that batch
    /// several dispatches and copies into one submission).
    pub fn encode_dispatch(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &ComputeKernel,
        bind_group: &wgpu::BindGroup,
        workgroups: [u32; 3],
    ) -> Result<(), GpuError> {
        self.check_workgroups(workgroups)?;
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(&kernel.label),
            timestamp_writes: None,
        });
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        let [x, y, z] = workgroups;
        pass.dispatch_workgroups(x, y, z);
        Ok(())
    }

    /// Binds `buffers[i]` to `@binding(i)` of group 0, dispatches `workgroups` and submits.
    /// Does not wait: a following [`GpuContext::read_back`] waits for the results.
    pub fn dispatch(
        &self,
        kernel: &ComputeKernel,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) -> Result<(), GpuError> {
        let bind_group = self.bind(kernel, buffers)?;
        self.scoped(|| {
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some(&kernel.label),
                });
            self.encode_dispatch(&mut encoder, kernel, &bind_group, workgroups)?;
            self.queue.submit([encoder.finish()]);
            Ok(())
        })?
    }

    /// Copies the first `count` values of type `T` from `source` (a buffer with `COPY_SRC`, such
    /// as one from [`GpuContext::storage_buffer`]) through `staging`, waits for the device and
    /// returns them.
    pub fn read_back<T: Pod>(
        &self,
        source: &wgpu::Buffer,
        count: usize,
        staging: &mut Readback,
    ) -> Result<Vec<T>, GpuError> {
        let mut out = vec![T::zeroed(); count];
        self.read_back_into(source, &mut out, staging)?;
        Ok(out)
    }

    /// As [`GpuContext::read_back`], into `out` (reads `out.len()` values).
    pub fn read_back_into<T: Pod>(
        &self,
        source: &wgpu::Buffer,
        out: &mut [T],
        staging: &mut Readback,
    ) -> Result<(), GpuError> {
        let bytes = std::mem::size_of_val(out) as u64;
        if bytes == 0 {
            return Ok(());
        }
        let copy = bytes.next_multiple_of(4);
        let stage = staging.ensure(self, copy)?;
        self.scoped(|| {
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("read back"),
                });
            encoder.copy_buffer_to_buffer(source, 0, stage, 0, copy);
            self.queue.submit([encoder.finish()]);
        })?;
        self.map_read(stage, copy, bytemuck::cast_slice_mut(out))
    }

    /// Maps the first `bytes` of `stage` (a `MAP_READ` buffer whose copy is submitted), copies
    /// `out.len()` bytes into `out` and unmaps. Map failures and device loss are errors.
    pub fn map_read(
        &self,
        stage: &wgpu::Buffer,
        bytes: u64,
        out: &mut [u8],
    ) -> Result<(), GpuError> {
        let (tx, rx) = mpsc::channel();
        stage.map_async(wgpu::MapMode::Read, 0..bytes, move |r| {
            // The receiver lives until after the poll below; a failed send only means it gave up.
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Map(e.to_string()))?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(GpuError::Map(e.to_string())),
            Err(_) => return Err(GpuError::Map("map callback never ran".into())),
        }
        let result = match stage.get_mapped_range(0..bytes) {
            Ok(view) => {
                out.copy_from_slice(&view[..out.len()]);
                Ok(())
            }
            Err(e) => Err(GpuError::Map(e.to_string())),
        };
        stage.unmap();
        self.take_uncaptured()?;
        result
    }
}

/// A compiled compute pipeline with its bind group layout (group 0), built by
/// [`GpuContext::pipeline`].
#[derive(Debug)]
pub struct ComputeKernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    label: String,
}

impl ComputeKernel {
    /// The wgpu pipeline.
    pub fn pipeline(&self) -> &wgpu::ComputePipeline {
        &self.pipeline
    }

    /// The layout of bind group 0.
    pub fn layout(&self) -> &wgpu::BindGroupLayout {
        &self.layout
    }

    /// The label given at creation.
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// A reusable `MAP_READ` staging buffer for read-backs, grown when a larger read needs it.
#[derive(Debug, Default)]
pub struct Readback {
    buffer: Option<wgpu::Buffer>,
}

impl Readback {
    /// An empty staging slot; the buffer is created on first use.
    pub fn new() -> Readback {
        Readback::default()
    }

    /// The staging buffer, at least `bytes` long (created or replaced when too small).
    pub fn ensure(&mut self, ctx: &GpuContext, bytes: u64) -> Result<&wgpu::Buffer, GpuError> {
        let big_enough = self.buffer.as_ref().is_some_and(|b| b.size() >= bytes);
        if !big_enough {
            use wgpu::BufferUsages as U;
            self.buffer = Some(ctx.buffer("read back", bytes, U::MAP_READ | U::COPY_DST)?);
        }
        // Set just above when missing or too small.
        self.buffer
            .as_ref()
            .ok_or_else(|| GpuError::Internal("staging buffer missing".into()))
    }
}
