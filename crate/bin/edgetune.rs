//! The `edgetune` command-line tool: conformance checks, GPU probing (and, as the engine
//! grows, converting, quantizing, training, evaluating and benchmarking models).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench_cmd;
mod commands;
mod compress_cmd;
mod train_cmd;
use edgetune::import::onnx::conformance::{self, Outcome};

#[derive(Parser)]
#[command(name = "edgetune", version = edgetune::VERSION, about = "int8 vision engine: inference and on-device fine-tuning")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// CPU threads: images in parallel (features, evaluation, calibration) and each kernel's
    /// rows split over them; results are identical for any count. Default: every core the
    /// process may use, or EDGETUNE_THREADS.
    #[arg(long, global = true)]
    threads: Option<usize>,
}

/// Post-training quantization settings (quantize, and qat's starting point).
#[derive(clap::Args)]
struct CalibArgs {
    /// minmax, percentile or mse.
    #[arg(long, default_value = "mse")]
    method: String,
    /// Number of calibration images (the first N of the source).
    #[arg(long, default_value_t = 100)]
    samples: usize,
    /// none, analytic (from weight rounding) or empirical (analytic, then measured layer by layer).
    #[arg(long, default_value = "empirical")]
    bias_correction: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run ONNX backend node tests (e.g. /usr/share/libonnx-testdata/data/node) on the reference kernels.
    Conformance {
        /// Directory holding one sub-directory per test (model.onnx + test_data_set_*).
        dir: PathBuf,
        /// Run only the tests named in this file (one per line).
        #[arg(long)]
        only: Option<PathBuf>,
        /// Print only failures and the closing line.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Find a GPU adapter and say what it is.
    Probe,
    /// Import a model into .etm: a quantized TFLite classifier (.tflite, its quantization kept),
    /// an ONNX CNN (.onnx, float or QDQ) or a PyTorch legacy checkpoint of EfficientNet-Lite0 (.pth).
    Import {
        /// The model file (.tflite, .onnx or .pth).
        input: PathBuf,
        /// Output .etm file.
        output: PathBuf,
        /// Class labels: text (one per line) or JSON ({"0": "tench", ...}); required for .pth,
        /// otherwise "class N".
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Architecture of the checkpoint.
        #[arg(long, default_value = "efficientnet_lite0")]
        arch: String,
        /// Where the checkpoint came from (recorded in the model).
        #[arg(long, default_value = "")]
        source: String,
        /// Input normalization mean in [0, 1] units, `(x / 255 - mean) / std`: one value or
        /// R,G,B, or `imagenet` (torchvision's 0.485,0.456,0.406). ONNX models only; the
        /// default is the engine's (x - 127) / 128.
        #[arg(long, allow_hyphen_values = true)]
        mean: Option<String>,
        /// Input normalization std in [0, 1] units: one value or R,G,B, or `imagenet`
        /// (0.229,0.224,0.225).
        #[arg(long)]
        std: Option<String>,
    },
    /// Export a model to ONNX (opset 13): f32 models as float ops, int8 models as QDQ.
    Export {
        model: PathBuf,
        /// Output .onnx file.
        output: PathBuf,
    },
    /// Print what a model file holds.
    Info { model: PathBuf },
    /// Post-training quantization to int8.
    Quantize {
        /// Calibration images: a folder of images or cifar10:PATH.
        #[arg(long)]
        calib: String,
        #[command(flatten)]
        cal: CalibArgs,
        input: PathBuf,
        output: PathBuf,
    },
    /// Classify images: top-5 labels with probabilities and the inference time.
    Classify {
        #[arg(long)]
        model: PathBuf,
        /// auto, cpu or gpu.
        #[arg(long, default_value = "auto")]
        backend: String,
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Fine-tune a backbone on labelled images: a new head, or the last blocks too.
    Finetune {
        #[command(flatten)]
        args: train_cmd::TrainArgs,
        /// Use the first N images of each class.
        #[arg(long)]
        per_class: usize,
        /// Output .etm.
        #[arg(long)]
        out: PathBuf,
    },
    /// Prune a fine-tuned float model: magnitude pruning of its last blocks and head to
    /// --sparsity on a gradual schedule while they train, or --structured: remove expansion
    /// channels across the whole network until its MACs fall by --sparsity (a smaller dense
    /// model), then fine-tune the last blocks.
    Prune {
        #[command(flatten)]
        args: train_cmd::TrainArgs,
        /// Use the first N images of each class.
        #[arg(long)]
        per_class: usize,
        /// Fraction removed, in [0, 1): of the trained layers' weights, or (structured) of the
        /// whole network's MACs.
        #[arg(long, allow_negative_numbers = true)]
        sparsity: f32,
        #[arg(long)]
        structured: bool,
        /// Structured: training images whose activations score the channels.
        #[arg(long, default_value_t = 100)]
        calib_images: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Quantization-aware training: post-training quantization, then the last blocks and head
    /// trained with fake quantization; writes an int8 model.
    Qat {
        #[command(flatten)]
        args: train_cmd::TrainArgs,
        #[arg(long)]
        per_class: usize,
        /// Start from this int8 model (the PTQ form of --model) instead of quantizing here.
        #[arg(long)]
        ptq: Option<PathBuf>,
        /// Calibration images for the PTQ start (default: --data).
        #[arg(long)]
        calib: Option<String>,
        #[command(flatten)]
        cal: CalibArgs,
        #[arg(long)]
        out: PathBuf,
    },
    /// Knowledge distillation: train the student's (--model) last blocks and head on a
    /// teacher's logits and the labels.
    Distill {
        #[command(flatten)]
        args: train_cmd::TrainArgs,
        #[arg(long)]
        per_class: usize,
        /// The teacher .etm (same classes as the data).
        #[arg(long)]
        teacher: PathBuf,
        /// Weight of the labels' cross-entropy; 1 - alpha goes to the teacher.
        #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
        alpha: f32,
        #[arg(long, default_value_t = 4.0, allow_negative_numbers = true)]
        temperature: f32,
        /// Extra images without labels (cifar10:PATH or a folder), trained on the teacher alone.
        #[arg(long)]
        unlabelled: Option<String>,
        #[arg(long, default_value_t = 0)]
        unlabelled_offset: usize,
        #[arg(long)]
        unlabelled_count: Option<usize>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Few-shot table: fine-tune on the first N images per class for each N, test on a
    /// labelled source (features of the test images computed once).
    Fewshot {
        #[command(flatten)]
        args: train_cmd::TrainArgs,
        /// Comma-separated N values.
        #[arg(long, default_value = "5,10,20,50", value_delimiter = ',')]
        per_class: Vec<usize>,
        /// Labelled test images (cifar10:PATH).
        #[arg(long)]
        test: String,
        #[arg(long, default_value_t = 0)]
        test_offset: usize,
        #[arg(long)]
        test_limit: Option<usize>,
        /// Also write the table as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Speed figures (printed, and written as JSON with --json): GPU GEMM throughput, per-layer
    /// GPU times and whole-network latency, or CPU whole-network latency.
    Bench {
        /// gpu, cpu or auto.
        #[arg(long, default_value = "gpu")]
        backend: String,
        #[arg(long, default_value = "www/models/efficientnet_lite0.int8.etm")]
        model: PathBuf,
        /// Input image (default: ../shared/data/photos/parrot.jpg when present).
        #[arg(long)]
        image: Option<PathBuf>,
        /// Timed runs per figure.
        #[arg(long, default_value_t = 30)]
        runs: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Compare a model with a reference model (and report accuracy on labelled data when the
    /// model's classes are the data's).
    Eval {
        #[arg(long)]
        model: PathBuf,
        /// Backend of the model (auto, cpu or gpu); the reference runs on the CPU.
        #[arg(long, default_value = "auto")]
        backend: String,
        #[arg(long)]
        reference: Option<PathBuf>,
        /// cifar10:PATH or a folder of images.
        #[arg(long)]
        data: String,
        /// Evaluate only N images.
        #[arg(long)]
        limit: Option<usize>,
        /// Skip the first N images (e.g. those used for calibration).
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// Write the pooled features (what a head trains on) of labelled images as NumPy files:
    /// `[N, dim]` float32 and the labels as int32.
    Embed {
        #[arg(long)]
        model: PathBuf,
        /// cifar10:PATH or a folder of images (one sub-folder per class for labels).
        #[arg(long)]
        data: String,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        #[arg(long)]
        limit: Option<usize>,
        /// Output .npy of the features.
        #[arg(long)]
        out: PathBuf,
        /// Output .npy of the labels.
        #[arg(long)]
        labels_out: Option<PathBuf>,
    },
}

fn conformance_cmd(dir: PathBuf, only: Option<PathBuf>, quiet: bool) -> edgetune::Result<bool> {
    let list = only.as_deref().map(conformance::read_list).transpose()?;
    let summary = conformance::run_suite(&dir, list.as_deref(), |name, outcome| match outcome {
        Outcome::Pass if !quiet => println!("PASS {name}"),
        Outcome::Pass => {}
        Outcome::Skip(why) if !quiet => println!("SKIP {name}: {why}"),
        Outcome::Skip(_) => {}
        Outcome::Fail(why) => println!("FAIL {name}: {why}"),
    })?;
    println!("{summary}");
    Ok(summary.failed == 0)
}

fn progress_bar(len: usize, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(len as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} {elapsed_precise} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Restores the default SIGPIPE action, so `edgetune ... | head` ends quietly like other
/// command-line tools instead of panicking on a failed write (Rust ignores SIGPIPE).
fn quiet_broken_pipe() {
    #[cfg(unix)]
    // SAFETY: called once at start-up, before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Outside a desktop session (a plain shell, ssh, CI) Mesa's Vulkan device-select layer asks
/// Wayland for the default GPU, and libwayland prints `error: XDG_RUNTIME_DIR is invalid or
/// not set in the environment.` to stderr before our output. The layer only reorders the
/// devices; wgpu enumerates them all and picks by power preference itself, so without a
/// runtime directory the layer is switched off (`NODEVICE_SELECT=1`, Mesa's own switch)
/// unless the user set it either way.
fn quiet_mesa_device_select() {
    let runtime_dir_ok = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir());
    if !runtime_dir_ok && std::env::var_os("NODEVICE_SELECT").is_none() {
        // Called once at start-up, before any thread exists (set_var is then sound).
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

fn main() -> ExitCode {
    quiet_broken_pipe();
    quiet_mesa_device_select();
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        if n == 0 {
            eprintln!("error: --threads 0: give at least 1");
            return ExitCode::from(2);
        }
        edgetune::base::pool::set_threads(n);
    }
    let result = match cli.command {
        Command::Conformance { dir, only, quiet } => conformance_cmd(dir, only, quiet),
        Command::Probe => pollster::block_on(edgetune::gpu::probe()).map(|r| {
            println!("GPU: {}", r.describe());
            true
        }),
        Command::Import { input, output, labels, arch, source, mean, std } => {
            commands::normalization(mean.as_deref(), std.as_deref())
                .and_then(|norm| commands::import(&input, &output, labels.as_deref(), &arch, &source, norm))
        }
        Command::Export { model, output } => commands::export(&model, &output),
        Command::Info { model } => commands::info(&model),
        Command::Quantize { calib, cal, input, output } => {
            let args = commands::QuantizeArgs {
                calib: &calib,
                method: &cal.method,
                samples: cal.samples,
                bias_correction: &cal.bias_correction,
            };
            commands::quantize(&args, &input, &output, &progress_bar)
        }
        Command::Classify { model, backend, images } => commands::classify(&model, &backend, &images),
        Command::Finetune { args, per_class, out } => train_cmd::run(&args, per_class, &out, &progress_bar),
        Command::Prune { args, per_class, sparsity, structured, calib_images, out } => {
            compress_cmd::prune(&args, per_class, sparsity, structured, calib_images, &out, &progress_bar)
        }
        Command::Qat { args, per_class, ptq, calib, cal, out } => {
            let q = compress_cmd::PtqArgs {
                ptq: ptq.as_deref(),
                calib: calib.as_deref(),
                method: &cal.method,
                samples: cal.samples,
                bias_correction: &cal.bias_correction,
            };
            compress_cmd::qat(&args, per_class, &q, &out, &progress_bar)
        }
        Command::Distill {
            args,
            per_class,
            teacher,
            alpha,
            temperature,
            unlabelled,
            unlabelled_offset,
            unlabelled_count,
            out,
        } => {
            let d = compress_cmd::DistillArgs {
                teacher: &teacher,
                alpha,
                temperature,
                unlabelled: unlabelled.as_deref(),
                unlabelled_offset,
                unlabelled_count,
            };
            compress_cmd::distill(&args, per_class, &d, &out, &progress_bar)
        }
        Command::Fewshot { args, per_class, test, test_offset, test_limit, json } => {
            train_cmd::fewshot(&args, &per_class, &test, (test_offset, test_limit), json.as_deref())
        }
        Command::Bench { backend, model, image, runs, json } => bench_cmd::run(&bench_cmd::BenchArgs {
            backend: &backend,
            model: &model,
            image: image.as_deref(),
            runs,
            json: json.as_deref(),
        }),
        Command::Embed { model, data, offset, limit, out, labels_out } => {
            commands::embed(&model, &data, (offset, limit), &out, labels_out.as_deref())
        }
        Command::Eval { model, backend, reference, data, limit, offset } => {
            commands::eval((&model, &backend), reference.as_deref(), &data, limit, offset, &progress_bar)
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
