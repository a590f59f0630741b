//! Losses and optimizers against PyTorch: 100 steps of a linear classifier on a fixed small
//! problem, for every optimizer x every loss, must match PyTorch's parameter trajectories
//! within 1e-5 relative, at every 10th step. "Relative" is norm-wise over the whole parameter
//! vector (weights and bias): max |difference| / max |PyTorch parameter|. (Adam-type updates
//! have a fixed size `lr`, so float rounding shows up as an absolute ~1e-7 everywhere; an
//! element-wise relative measure would only reflect how close a parameter is to zero.)
//!
//! The PyTorch side comes from `tests/reference/optim_trajectories.py`: run live when
//! Debian's `python3-torch` is importable, otherwise read from the committed
//! `optim_trajectories.json` that the same script wrote.

use std::path::Path;
use std::process::Command;

use edgetune::train::head::LinearHead;
use edgetune::train::loss::{distillation, Loss};
use edgetune::train::optim::{clip_grad_norm, step, Optimizer, State};
use serde_json::Value;

const TOLERANCE: f64 = 1e-5;

fn reference() -> (Value, &'static str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/optim_trajectories.py");
    // Debian's python3-torch installs for the system interpreter.
    for python in ["/usr/bin/python3", "python3"] {
        let Ok(out) = Command::new(python).arg(&script).output() else { continue };
        if out.status.success() {
            if let Ok(v) = serde_json::from_slice(&out.stdout) {
                return (v, "live PyTorch");
            }
        }
    }
    let golden = script.with_extension("json");
    let text = std::fs::read_to_string(&golden).expect("committed golden trajectories");
    eprintln!("PyTorch is not importable here: comparing against {}", golden.display());
    (serde_json::from_str(&text).expect("golden JSON"), "committed golden values")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}

fn matrix(v: &Value) -> Vec<f32> {
    v.as_array().expect("array").iter().flat_map(floats).collect()
}

fn optimizer(name: &str, p: &Value) -> (Optimizer, f32) {
    let f = |k: &str| p[k].as_f64().unwrap_or(0.0) as f32;
    let wd = f("weight_decay");
    let opt = match name {
        "sgd" | "momentum" | "nesterov" => Optimizer::Sgd {
            momentum: f("momentum"),
            nesterov: p["nesterov"].as_bool().unwrap_or(false),
            weight_decay: wd,
        },
        "adam" => Optimizer::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: wd },
        "adamw" => Optimizer::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: wd },
        "rmsprop" => Optimizer::RmsProp { alpha: 0.99, eps: 1e-8, momentum: f("momentum"), weight_decay: wd },
        other => panic!("unknown optimizer {other}"),
    };
    (opt, f("lr"))
}

fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().fold(0f64, |m, &v| m.max(v.abs() as f64)).max(1e-12);
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).abs()).fold(0.0, f64::max) / scale
}

#[test]
fn optimizers_and_losses_follow_pytorch_trajectories() {
    let (r, source) = reference();
    let p = &r["problem"];
    let (n, d, k) =
        (p["n"].as_u64().unwrap() as usize, p["d"].as_u64().unwrap() as usize, p["k"].as_u64().unwrap() as usize);
    let x = matrix(&p["x"]);
    let labels: Vec<usize> = p["labels"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let teacher = matrix(&p["teacher"]);
    // The problem is closed-form: check the reference used the formulas this test knows.
    for i in 0..n {
        for j in 0..d {
            let want = (1.3 * i as f64 + 0.7 * j as f64 + 0.1).sin() as f32;
            assert!((x[i * d + j] - want).abs() < 1e-6, "reference problem differs at x[{i}, {j}]");
        }
    }
    let class_weights = floats(&r["class_weights"]);
    let max_norm = r["max_norm"].as_f64().unwrap() as f32;
    let cases = r["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 36, "6 optimizers x 6 losses");
    let mut worst = (0f64, String::new());
    for case in cases {
        let (opt_name, loss_name) = (case["optimizer"].as_str().unwrap(), case["loss"].as_str().unwrap());
        let (opt, lr) = optimizer(opt_name, &r["optimizers"][opt_name]);
        let mut head = LinearHead { dim: d, classes: k, weight: matrix(&p["weight"]), bias: floats(&p["bias"]) };
        let (mut sw, mut sb) = (State::default(), State::default());
        let checkpoints = case["checkpoints"].as_array().unwrap();
        let mut next = checkpoints.iter().peekable();
        for t in 1..=100 {
            let logits = head.logits(&x, n).unwrap();
            let (loss, dlogits) = match loss_name {
                "ce" | "ce_clipped" => Loss::cross_entropy().compute(&logits, &labels, k),
                "ce_smooth_weighted" => {
                    Loss::CrossEntropy { label_smoothing: 0.1, class_weights: Some(class_weights.clone()) }
                        .compute(&logits, &labels, k)
                }
                "mse" => Loss::Mse.compute(&logits, &labels, k),
                "hinge" => Loss::Hinge.compute(&logits, &labels, k),
                "distill" => distillation(&logits, &teacher, Some(&labels), k, 0.5, 2.0),
                other => panic!("unknown loss {other}"),
            }
            .unwrap();
            let (mut dw, mut db) = head.gradients(&x, n, &dlogits).unwrap();
            if loss_name == "ce_clipped" {
                clip_grad_norm(&mut [&mut dw, &mut db], max_norm).unwrap();
            }
            step(&opt, lr, &mut head.weight, &dw, &mut sw).unwrap();
            step(&opt, lr, &mut head.bias, &db, &mut sb).unwrap();
            if let Some(c) = next.next_if(|c| c["step"].as_u64() == Some(t)) {
                let (want_w, want_b) = (floats(&c["weight"]), floats(&c["bias"]));
                let loss_ref = c["loss"].as_f64().unwrap();
                let dl = (loss as f64 - loss_ref).abs() / loss_ref.abs().max(1e-12);
                let ours: Vec<f32> = head.weight.iter().chain(&head.bias).copied().collect();
                let want: Vec<f32> = want_w.iter().chain(&want_b).copied().collect();
                let e = rel_diff(&ours, &want);
                if e > worst.0 {
                    worst = (e, format!("{opt_name}/{loss_name} step {t}"));
                }
                assert!(
                    e <= TOLERANCE && dl <= TOLERANCE,
                    "{opt_name} + {loss_name}, step {t}: parameters {e:.2e}, loss {dl:.2e} relative to {source}\nours {ours:?}\nref  {want:?}"
                );
            }
        }
        assert!(next.next().is_none(), "{opt_name}/{loss_name}: not every checkpoint was compared");
    }
    eprintln!("36 trajectories match {source}; worst relative difference {:.2e} ({})", worst.0, worst.1);
}
