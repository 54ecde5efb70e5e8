//! Batched scorers: GPU, CPU reference and the automatic choice between them.
//!
//! Input: a validated [`Model`] and batches of feature rows (row-major `f32`, one row per signal,
//! built by the scoring stage). Output: one score per row, through the
//! [`cep_core::scorer::Scorer`] trait. Next stage: the scoring stage stores the scores on the
//! signals and applies thresholds.
//!
//! - [`CpuScorer`]: [`Model::score_cpu`], the reference.
//! - [`GpuScorer`]: one WGSL pipeline and the model's buffers built once; rows are uploaded in
//!   chunks that fit the binding limit and the dispatch limit (65535 workgroups of 64 rows on
//!   most devices), scores read back through a reused staging buffer. Agrees with the CPU within
//!   `|gpu − cpu| ≤ 1e-5 + 1e-5·|cpu|` ([`within_tolerance`]).
//! - [`AutoScorer`]: picks per batch; the CPU below `min_gpu_batch` rows or when there is no
//!   usable GPU, and counts what it did ([`ScoreStats`]).

use std::fmt;
use std::str::FromStr;

use cep_core::scorer::{ScoreError, Scorer, check_batch};

use crate::context::{ComputeKernel, GpuContext, GpuError, Readback};
use crate::model::{Model, ModelKind, Node, TreeOutput};

/// WGSL sources of the scoring kernels.
pub mod shaders {
    /// Logistic regression.
    pub const LOGISTIC: &str = include_str!("shaders/score_logistic.wgsl");
    /// Multilayer perceptron.
    pub const MLP: &str = include_str!("shaders/score_mlp.wgsl");
    /// Tree ensembles.
    pub const TREES: &str = include_str!("shaders/score_trees.wgsl");
}

/// Rows per workgroup in the scoring shaders (`@workgroup_size(64)`).
pub const WORKGROUP_ROWS: usize = 64;

/// The widest MLP layer the GPU kernel takes (`MAX_WIDTH` in the shader); wider models score on
/// the CPU (`AutoScorer` with [`ScoreDevice::Auto`]) or fail with [`GpuError::Unsupported`].
pub const MLP_MAX_WIDTH: usize = 128;

/// Default `min_gpu_batch` for [`AutoScorer`]: below this many rows a batch is scored on the
/// CPU, because upload, dispatch and read-back cost more than scoring it there (see
/// `docs/models.md` for the measurements behind it).
pub const DEFAULT_MIN_GPU_BATCH: usize = 16_384;

/// The documented GPU/CPU agreement: `|gpu − cpu| ≤ 1e-5 + 1e-5·|cpu|` (NaN matches NaN).
pub fn within_tolerance(gpu: f32, cpu: f32) -> bool {
    if gpu.is_nan() || cpu.is_nan() {
        return gpu.is_nan() && cpu.is_nan();
    }
    (gpu - cpu).abs() <= 1e-5 + 1e-5 * cpu.abs()
}

/// Where to score.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScoreDevice {
    /// The GPU for large batches when a real GPU exists; the CPU otherwise.
    #[default]
    Auto,
    /// Always the GPU; an error when there is no adapter.
    Gpu,
    /// Always the CPU.
    Cpu,
}

impl FromStr for ScoreDevice {
    type Err = String;

    fn from_str(s: &str) -> Result<ScoreDevice, String> {
        match s {
            "auto" => Ok(ScoreDevice::Auto),
            "gpu" => Ok(ScoreDevice::Gpu),
            "cpu" => Ok(ScoreDevice::Cpu),
            other => Err(format!("unknown score device {other:?} (auto, gpu, cpu)")),
        }
    }
}

impl fmt::Display for ScoreDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScoreDevice::Auto => "auto",
            ScoreDevice::Gpu => "gpu",
            ScoreDevice::Cpu => "cpu",
        })
    }
}

/// What an [`AutoScorer`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScoreStats {
    /// Batches scored on the GPU.
    pub gpu_batches: u64,
    /// Batches scored on the CPU.
    pub cpu_batches: u64,
    /// Rows scored in all.
    pub rows: u64,
}

/// The CPU reference scorer ([`Model::score_cpu`]).
#[derive(Clone, Debug)]
pub struct CpuScorer {
    model: Model,
}

impl CpuScorer {
    /// Scores with `model` (validated by its JSON reader, or see [`Model::validate`]).
    pub fn new(model: Model) -> CpuScorer {
        CpuScorer { model }
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }
}

impl Scorer for CpuScorer {
    fn feature_count(&self) -> usize {
        self.model.features.len()
    }

    fn score_batch(&mut self, rows: &[f32], out: &mut [f32]) -> Result<(), ScoreError> {
        check_batch(self.feature_count(), rows, out)?;
        self.model.score_cpu(rows, out);
        Ok(())
    }
}

/// A model's kernel and constant buffers on the device.
#[derive(Debug)]
struct Program {
    kernel: ComputeKernel,
    /// Model buffers bound after the rows (bindings 2, 3, …), before the output.
    buffers: Vec<wgpu::Buffer>,
    /// The uniform header with `n_rows` as its first word, rewritten per chunk.
    header: Vec<u32>,
}

fn words_f32(v: &[f32]) -> impl Iterator<Item = f32> + '_ {
    v.iter().copied()
}

impl Program {
    fn build(ctx: &GpuContext, model: &Model) -> Result<Program, GpuError> {
        let n = model.features.len();
        let n32 = u32::try_from(n).map_err(|_| GpuError::Unsupported(format!("{n} features")))?;
        match &model.kind {
            ModelKind::Logistic {
                weights,
                bias,
                standardize,
            } => {
                let mut params = vec![*bias];
                params.extend(words_f32(weights));
                if let Some(s) = standardize {
                    params.extend(words_f32(&s.mean));
                    params.extend(s.inv_std());
                }
                let kernel = ctx.pipeline("score logistic", shaders::LOGISTIC, "main")?;
                let buffers = vec![ctx.storage_buffer("logistic model", &params)?];
                Ok(Program {
                    kernel,
                    buffers,
                    header: vec![0, n32, u32::from(standardize.is_some()), 0],
                })
            }
            ModelKind::Mlp {
                layers,
                standardize,
            } => {
                let mut weights: Vec<f32> = Vec::new();
                if let Some(s) = standardize {
                    weights.extend(words_f32(&s.mean));
                    weights.extend(s.inv_std());
                }
                let mut descs: Vec<u32> = Vec::with_capacity(layers.len() * 4);
                let mut inputs = n;
                for (li, l) in layers.iter().enumerate() {
                    let outputs = l.weights.len();
                    if outputs > MLP_MAX_WIDTH {
                        return Err(GpuError::Unsupported(format!(
                            "MLP layer {li} has {outputs} outputs; the GPU kernel takes at most {MLP_MAX_WIDTH}"
                        )));
                    }
                    let offset = u32::try_from(weights.len())
                        .map_err(|_| GpuError::Unsupported("MLP too large".into()))?;
                    for row in &l.weights {
                        weights.extend(words_f32(row));
                    }
                    weights.extend(words_f32(&l.bias));
                    // Lengths were validated, widths bounded above: these fit in u32.
                    descs.extend([inputs as u32, outputs as u32, offset, l.activation.code()]);
                    inputs = outputs;
                }
                let kernel = ctx.pipeline("score mlp", shaders::MLP, "main")?;
                let buffers = vec![
                    ctx.storage_buffer("mlp weights", &weights)?,
                    ctx.storage_buffer("mlp layers", &descs)?,
                ];
                let n_layers = layers.len() as u32;
                Ok(Program {
                    kernel,
                    buffers,
                    header: vec![0, n32, n_layers, u32::from(standardize.is_some())],
                })
            }
            ModelKind::Trees {
                trees,
                base_score,
                output,
            } => {
                if n32 > 0x3fff_ffff {
                    return Err(GpuError::Unsupported(format!(
                        "{n} features (the tree kernel takes 2^30)"
                    )));
                }
                let mut nodes: Vec<[u32; 4]> = Vec::new();
                let mut roots: Vec<u32> = Vec::with_capacity(trees.len());
                for t in trees {
                    let first = u32::try_from(nodes.len())
                        .map_err(|_| GpuError::Unsupported("too many tree nodes".into()))?;
                    roots.push(first);
                    for node in &t.nodes {
                        nodes.push(match *node {
                            Node::Leaf { value } => [0x8000_0000, value.to_bits(), 0, 0],
                            Node::Split {
                                feature,
                                threshold,
                                left,
                                right,
                                default_left,
                            } => {
                                let flags = if default_left { 0x4000_0000 } else { 0 };
                                [
                                    feature | flags,
                                    threshold.to_bits(),
                                    first + left,
                                    first + right,
                                ]
                            }
                        });
                    }
                }
                let kernel = ctx.pipeline("score trees", shaders::TREES, "main")?;
                let buffers = vec![
                    ctx.storage_buffer("tree nodes", &nodes)?,
                    ctx.storage_buffer("tree roots", &roots)?,
                ];
                let sigmoid = u32::from(*output == TreeOutput::Sigmoid);
                let n_trees = u32::try_from(trees.len())
                    .map_err(|_| GpuError::Unsupported("too many trees".into()))?;
                Ok(Program {
                    kernel,
                    buffers,
                    header: vec![0, n32, n_trees, sigmoid, base_score.to_bits(), 0, 0, 0],
                })
            }
        }
    }
}

/// Rows and scores buffers for one chunk, with their bind group; grown when a larger batch
/// arrives (up to the chunk size).
#[derive(Debug)]
struct Slots {
    capacity: usize,
    rows: wgpu::Buffer,
    out: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

/// Scores on the GPU: pipeline and model buffers built once, rows streamed in chunks.
#[derive(Debug)]
pub struct GpuScorer {
    ctx: &'static GpuContext,
    program: Program,
    params: wgpu::Buffer,
    features: usize,
    chunk_rows: usize,
    slots: Option<Slots>,
    staging: Readback,
}

impl GpuScorer {
    /// Builds the pipeline and uploads `model` (validated first).
    pub fn new(ctx: &'static GpuContext, model: &Model) -> Result<GpuScorer, GpuError> {
        GpuScorer::with_chunk_rows(ctx, model, usize::MAX)
    }

    /// As [`GpuScorer::new`], with at most `max_chunk_rows` rows per dispatch (the device limits
    /// may lower it further). Small values exercise chunking in tests.
    pub fn with_chunk_rows(
        ctx: &'static GpuContext,
        model: &Model,
        max_chunk_rows: usize,
    ) -> Result<GpuScorer, GpuError> {
        model
            .validate()
            .map_err(|e| GpuError::Unsupported(format!("invalid model: {e}")))?;
        let features = model.features.len();
        let program = Program::build(ctx, model)?;
        let params = ctx.uniform_buffer("score params", &program.header)?;
        let binding = usize::try_from(ctx.max_binding_bytes()).unwrap_or(usize::MAX);
        let by_rows = binding / (features * 4);
        let by_out = binding / 4;
        let by_dispatch = ctx.max_workgroups_per_dimension() as usize * WORKGROUP_ROWS;
        // Row indices are u32 in the shaders (row × features too): keep them in range.
        let by_index = u32::MAX as usize / features;
        let chunk_rows = max_chunk_rows
            .min(by_rows)
            .min(by_out)
            .min(by_dispatch)
            .min(by_index)
            .max(1);
        Ok(GpuScorer {
            ctx,
            program,
            params,
            features,
            chunk_rows,
            slots: None,
            staging: Readback::new(),
        })
    }

    /// Rows per dispatch.
    pub fn chunk_rows(&self) -> usize {
        self.chunk_rows
    }

    /// The context this scorer runs on.
    pub fn context(&self) -> &'static GpuContext {
        self.ctx
    }

    fn ensure_slots(&mut self, rows: usize) -> Result<(), GpuError> {
        if self.slots.as_ref().is_some_and(|s| s.capacity >= rows) {
            return Ok(());
        }
        // Grow geometrically so that slowly growing batches do not reallocate every time.
        let capacity = rows
            .next_power_of_two()
            .clamp(WORKGROUP_ROWS, self.chunk_rows.max(WORKGROUP_ROWS))
            .max(rows);
        let rows_buf = self
            .ctx
            .storage_buffer_zeroed("score rows", (capacity * self.features * 4) as u64)?;
        let out = self
            .ctx
            .storage_buffer_zeroed("scores", (capacity * 4) as u64)?;
        let mut bound: Vec<&wgpu::Buffer> = vec![&self.params, &rows_buf];
        bound.extend(self.program.buffers.iter());
        bound.push(&out);
        let bind_group = self.ctx.bind(&self.program.kernel, &bound)?;
        self.slots = Some(Slots {
            capacity,
            rows: rows_buf,
            out,
            bind_group,
        });
        Ok(())
    }

    fn score_chunk(&mut self, rows: &[f32], out: &mut [f32]) -> Result<(), GpuError> {
        let n = out.len();
        self.ensure_slots(n)?;
        let ctx = self.ctx;
        let mut header = self.program.header.clone();
        header[0] = n as u32; // n ≤ chunk_rows ≤ u32::MAX / features
        let bytes = (n * 4) as u64;
        let stage = self.staging.ensure(ctx, bytes.max(4))?;
        let Some(slots) = self.slots.as_ref() else {
            return Err(GpuError::Internal("score buffers missing".into()));
        };
        ctx.scoped(|| -> Result<(), GpuError> {
            ctx.queue()
                .write_buffer(&self.params, 0, bytemuck::cast_slice(&header));
            ctx.queue()
                .write_buffer(&slots.rows, 0, bytemuck::cast_slice(rows));
            let mut encoder =
                ctx.device()
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("score"),
                    });
            let groups = n.div_ceil(WORKGROUP_ROWS) as u32;
            ctx.encode_dispatch(
                &mut encoder,
                &self.program.kernel,
                &slots.bind_group,
                [groups, 1, 1],
            )?;
            encoder.copy_buffer_to_buffer(&slots.out, 0, stage, 0, bytes);
            ctx.queue().submit([encoder.finish()]);
            Ok(())
        })??;
        ctx.map_read(stage, bytes, bytemuck::cast_slice_mut(out))
    }

    /// Scores `rows` into `out` (see [`Scorer::score_batch`]), returning GPU errors as they are.
    pub fn try_score(&mut self, rows: &[f32], out: &mut [f32]) -> Result<(), GpuError> {
        let f = self.features;
        let chunk = self.chunk_rows;
        for (r, o) in rows.chunks(chunk * f).zip(out.chunks_mut(chunk)) {
            self.score_chunk(r, o)?;
        }
        Ok(())
    }
}

impl Scorer for GpuScorer {
    fn feature_count(&self) -> usize {
        self.features
    }

    fn score_batch(&mut self, rows: &[f32], out: &mut [f32]) -> Result<(), ScoreError> {
        check_batch(self.features, rows, out)?;
        self.try_score(rows, out)
            .map_err(|e| ScoreError::new(e.to_string()))
    }
}

/// Scores on the GPU or the CPU: see [`ScoreDevice`]. With [`ScoreDevice::Auto`] the GPU is used
/// only for a real GPU (a CPU driver such as llvmpipe is not faster than the CPU scorer) and
/// batches of at least `min_gpu_batch` rows; a GPU failure then falls back to the CPU for good
/// (the reason is kept, [`AutoScorer::fallback_reason`]). With [`ScoreDevice::Gpu`] every batch
/// goes to the GPU and errors are returned.
#[derive(Debug)]
pub struct AutoScorer {
    cpu: CpuScorer,
    gpu: Option<GpuScorer>,
    device: ScoreDevice,
    min_gpu_batch: usize,
    stats: ScoreStats,
    fallback: Option<String>,
}

impl AutoScorer {
    /// A scorer for `model` on `device`. Errors: an invalid model, or [`ScoreDevice::Gpu`]
    /// without an adapter (or with a model the GPU kernel cannot take).
    pub fn new(
        model: Model,
        device: ScoreDevice,
        min_gpu_batch: usize,
    ) -> Result<AutoScorer, GpuError> {
        model
            .validate()
            .map_err(|e| GpuError::Unsupported(format!("invalid model: {e}")))?;
        let (gpu, fallback) = match device {
            ScoreDevice::Cpu => (None, None),
            ScoreDevice::Gpu => {
                let ctx = GpuContext::shared()?;
                (Some(GpuScorer::new(ctx, &model)?), None)
            }
            ScoreDevice::Auto => match GpuContext::shared() {
                Err(e) => (None, Some(e.to_string())),
                Ok(ctx) if ctx.adapter().is_cpu => (
                    None,
                    Some(format!("adapter {} is a CPU driver", ctx.adapter())),
                ),
                Ok(ctx) => match GpuScorer::new(ctx, &model) {
                    Ok(g) => (Some(g), None),
                    Err(e) => (None, Some(e.to_string())),
                },
            },
        };
        Ok(AutoScorer {
            cpu: CpuScorer::new(model),
            gpu,
            device,
            min_gpu_batch,
            stats: ScoreStats::default(),
            fallback,
        })
    }

    /// What has been scored where so far.
    pub fn stats(&self) -> ScoreStats {
        self.stats
    }

    /// The requested device.
    pub fn device(&self) -> ScoreDevice {
        self.device
    }

    /// True when large batches go to the GPU.
    pub fn uses_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    /// Where large batches are scored, for reports: the adapter (`NAME (Vulkan, discrete GPU)`)
    /// or `CPU`.
    pub fn device_name(&self) -> String {
        match &self.gpu {
            Some(g) => g.context().adapter().to_string(),
            None => "CPU".to_string(),
        }
    }

    /// Why [`ScoreDevice::Auto`] is not using the GPU, if it is not.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// The batch size from which the GPU is used.
    pub fn min_gpu_batch(&self) -> usize {
        self.min_gpu_batch
    }

    /// The model.
    pub fn model(&self) -> &Model {
        self.cpu.model()
    }
}

impl Scorer for AutoScorer {
    fn feature_count(&self) -> usize {
        self.cpu.feature_count()
    }

    fn score_batch(&mut self, rows: &[f32], out: &mut [f32]) -> Result<(), ScoreError> {
        let n = check_batch(self.feature_count(), rows, out)?;
        let forced = self.device == ScoreDevice::Gpu;
        let mut on_gpu = false;
        if let Some(gpu) = self.gpu.as_mut() {
            if forced || n >= self.min_gpu_batch {
                match gpu.try_score(rows, out) {
                    Ok(()) => on_gpu = true,
                    Err(e) if forced => return Err(ScoreError::new(e.to_string())),
                    Err(e) => {
                        // Auto: a failing device is dropped, the batch rescored on the CPU.
                        self.fallback = Some(e.to_string());
                        self.gpu = None;
                    }
                }
            }
        }
        if on_gpu {
            self.stats.gpu_batches += 1;
        } else {
            self.cpu.score_batch(rows, out)?;
            self.stats.cpu_batches += 1;
        }
        self.stats.rows += n as u64;
        Ok(())
    }
}
