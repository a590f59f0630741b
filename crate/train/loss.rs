//! Classification losses over a batch of logits `[N, K]` (row-major), each returning the
//! mean loss and its gradient with respect to the logits (same layout). Definitions follow
//! PyTorch's so trajectories can be compared with it:
//!
//! - Cross-entropy with label smoothing `e` and class weights `w` (`nn.CrossEntropyLoss`):
//!   `p = softmax(x)`, `nll_i = -w[y_i] log p[i, y_i]`, `smooth_i = -sum_k w[k] log p[i, k]`,
//!   `L = ((1 - e) sum_i nll_i + e / K sum_i smooth_i) / sum_i w[y_i]`.
//!   Gradient: `dL/dx[i, j] = (c_i p[i, j] - t[i, j]) / W` with `t[i, j] = (1 - e) w[y_i] [j = y_i] + e w[j] / K`,
//!   `c_i = sum_j t[i, j]` and `W = sum_i w[y_i]`.
//! - MSE against one-hot targets (`nn.MSELoss` on logits): `L = sum (x - onehot)^2 / (N K)`.
//! - Multi-class hinge (`nn.MultiMarginLoss`, p = 1, margin 1):
//!   `L = sum_i sum_{j != y_i} max(0, 1 - x[i, y_i] + x[i, j]) / (K N)`.
//! - Distillation: `alpha CE(x, y) + (1 - alpha) T^2 KL(softmax(t / T) || softmax(x / T))`,
//!   KL averaged over the batch (PyTorch's `batchmean`); `t` are the teacher's logits.
//!   Soft-part gradient: `(1 - alpha) T (softmax(x / T) - softmax(t / T)) / N`.
//!
//! Softmax subtracts the row maximum and sums in f64, so large logits neither overflow nor
//! lose the small probabilities.

use crate::base::error::{Error, Result};

/// Which loss to train with.
#[derive(Clone, Debug, PartialEq)]
pub enum Loss {
    CrossEntropy { label_smoothing: f32, class_weights: Option<Vec<f32>> },
    Mse,
    Hinge,
}

impl Loss {
    /// Plain cross-entropy.
    pub fn cross_entropy() -> Self {
        Loss::CrossEntropy { label_smoothing: 0.0, class_weights: None }
    }

    /// Parses `ce`, `mse` or `hinge`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "ce" | "cross-entropy" => Ok(Self::cross_entropy()),
            "mse" => Ok(Loss::Mse),
            "hinge" => Ok(Loss::Hinge),
            _ => Err(Error::invalid("loss", format!("unknown loss '{name}' (ce, mse or hinge)"))),
        }
    }

    /// Mean loss over the batch and `dL/dlogits`.
    pub fn compute(&self, logits: &[f32], labels: &[usize], classes: usize) -> Result<(f32, Vec<f32>)> {
        match self {
            Loss::CrossEntropy { label_smoothing, class_weights } => {
                cross_entropy(logits, labels, classes, *label_smoothing, class_weights.as_deref())
            }
            Loss::Mse => mse(logits, labels, classes),
            Loss::Hinge => hinge(logits, labels, classes),
        }
    }
}

fn check(op: &'static str, logits: &[f32], labels: &[usize], classes: usize) -> Result<usize> {
    if classes == 0 || labels.is_empty() {
        return Err(Error::invalid(op, "empty batch or zero classes"));
    }
    if logits.len() != labels.len() * classes {
        return Err(Error::shape(
            op,
            format!("{} logits for {} labels x {classes} classes", logits.len(), labels.len()),
        ));
    }
    if let Some(&y) = labels.iter().find(|&&y| y >= classes) {
        return Err(Error::invalid(op, format!("label {y} outside 0..{classes}")));
    }
    if logits.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid(op, "logits contain NaN or infinity"));
    }
    Ok(labels.len())
}

/// Softmax of one row, computed stably in f64.
pub fn softmax_f64(row: &[f32], temperature: f64) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let e: Vec<f64> = row.iter().map(|&v| ((v as f64 - max) / temperature).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// Cross-entropy with label smoothing and optional class weights (see the module header).
pub fn cross_entropy(
    logits: &[f32],
    labels: &[usize],
    classes: usize,
    label_smoothing: f32,
    class_weights: Option<&[f32]>,
) -> Result<(f32, Vec<f32>)> {
    const OP: &str = "cross_entropy";
    check(OP, logits, labels, classes)?;
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(Error::invalid(OP, format!("label smoothing {label_smoothing} outside [0, 1]")));
    }
    let w: Vec<f64> = match class_weights {
        Some(w) if w.len() != classes => {
            return Err(Error::shape(OP, format!("{} class weights for {classes} classes", w.len())))
        }
        Some(w) if w.iter().any(|v| !v.is_finite() || *v < 0.0) => {
            return Err(Error::invalid(OP, "class weights must be finite and non-negative"))
        }
        Some(w) => w.iter().map(|&v| v as f64).collect(),
        None => vec![1.0; classes],
    };
    let e = label_smoothing as f64;
    let total_w: f64 = labels.iter().map(|&y| w[y]).sum();
    if total_w <= 0.0 {
        return Err(Error::invalid(OP, "the batch's class weights sum to zero"));
    }
    let mut loss = 0f64;
    let mut grad = vec![0f32; logits.len()];
    for (i, (row, &y)) in logits.chunks_exact(classes).zip(labels).enumerate() {
        let p = softmax_f64(row, 1.0);
        let mut t_sum = 0f64;
        for j in 0..classes {
            let t = (1.0 - e) * if j == y { w[y] } else { 0.0 } + e * w[j] / classes as f64;
            loss -= t * p[j].max(f64::MIN_POSITIVE).ln();
            t_sum += t;
            grad[i * classes + j] = -t as f32; // completed below once sum_j t is known
        }
        for j in 0..classes {
            let g = &mut grad[i * classes + j];
            *g = ((t_sum * p[j] + *g as f64) / total_w) as f32;
        }
    }
    Ok(((loss / total_w) as f32, grad))
}

/// Mean squared error of the logits against one-hot targets.
pub fn mse(logits: &[f32], labels: &[usize], classes: usize) -> Result<(f32, Vec<f32>)> {
    let n = check("mse", logits, labels, classes)?;
    let count = (n * classes) as f64;
    let mut loss = 0f64;
    let mut grad = vec![0f32; logits.len()];
    for (i, (row, &y)) in logits.chunks_exact(classes).zip(labels).enumerate() {
        for (j, &x) in row.iter().enumerate() {
            let d = x as f64 - if j == y { 1.0 } else { 0.0 };
            loss += d * d;
            grad[i * classes + j] = (2.0 * d / count) as f32;
        }
    }
    Ok(((loss / count) as f32, grad))
}

/// Multi-class hinge loss with margin 1.
pub fn hinge(logits: &[f32], labels: &[usize], classes: usize) -> Result<(f32, Vec<f32>)> {
    let n = check("hinge", logits, labels, classes)?;
    let count = (n * classes) as f64;
    let mut loss = 0f64;
    let mut grad = vec![0f32; logits.len()];
    for (i, (row, &y)) in logits.chunks_exact(classes).zip(labels).enumerate() {
        for j in (0..classes).filter(|&j| j != y) {
            let m = 1.0 - row[y] as f64 + row[j] as f64;
            if m > 0.0 {
                loss += m;
                grad[i * classes + j] += (1.0 / count) as f32;
                grad[i * classes + y] -= (1.0 / count) as f32;
            }
        }
    }
    Ok(((loss / count) as f32, grad))
}

/// Knowledge-distillation loss (see the module header). `labels` may be `None` for
/// unlabelled images, in which case only the soft part is used (`alpha` must then be 0).
pub fn distillation(
    student: &[f32],
    teacher: &[f32],
    labels: Option<&[usize]>,
    classes: usize,
    alpha: f32,
    temperature: f32,
) -> Result<(f32, Vec<f32>)> {
    const OP: &str = "distillation";
    if !(0.0..=1.0).contains(&alpha) {
        return Err(Error::invalid(OP, format!("alpha {alpha} outside [0, 1]")));
    }
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(Error::invalid(OP, format!("temperature {temperature} must be positive")));
    }
    if classes == 0 || student.is_empty() || !student.len().is_multiple_of(classes) {
        return Err(Error::shape(OP, format!("{} student logits for {classes} classes", student.len())));
    }
    if teacher.len() != student.len() {
        return Err(Error::shape(OP, format!("teacher has {} logits, student {}", teacher.len(), student.len())));
    }
    if student.iter().chain(teacher).any(|v| !v.is_finite()) {
        return Err(Error::invalid(OP, "logits contain NaN or infinity"));
    }
    let n = student.len() / classes;
    let (mut loss, mut grad) = match labels {
        Some(y) if alpha > 0.0 => {
            let (l, mut g) = cross_entropy(student, y, classes, 0.0, None)?;
            g.iter_mut().for_each(|v| *v *= alpha);
            (alpha as f64 * l as f64, g)
        }
        None if alpha > 0.0 => return Err(Error::invalid(OP, "alpha > 0 needs labels")),
        _ => (0.0, vec![0f32; student.len()]),
    };
    let t = temperature as f64;
    let soft = (1.0 - alpha as f64) * t * t;
    for (i, (s, te)) in student.chunks_exact(classes).zip(teacher.chunks_exact(classes)).enumerate() {
        let ps = softmax_f64(s, t);
        let pt = softmax_f64(te, t);
        let mut kl = 0f64;
        for j in 0..classes {
            if pt[j] > 0.0 {
                kl += pt[j] * (pt[j].ln() - ps[j].max(f64::MIN_POSITIVE).ln());
            }
            grad[i * classes + j] += (soft / t * (ps[j] - pt[j]) / n as f64) as f32;
        }
        loss += soft * kl / n as f64;
    }
    Ok((loss as f32, grad))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central finite differences of a loss in f64-ish precision (f32 logits, small step).
    fn numeric_grad(f: &dyn Fn(&[f32]) -> f32, x: &[f32]) -> Vec<f32> {
        let h = 1e-2f32;
        (0..x.len())
            .map(|i| {
                let mut a = x.to_vec();
                let mut b = x.to_vec();
                a[i] += h;
                b[i] -= h;
                (f(&a) - f(&b)) / (2.0 * h)
            })
            .collect()
    }

    fn assert_close(a: &[f32], b: &[f32], tol: f32) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "index {i}: analytic {x} vs numeric {y}");
        }
    }

    const LOGITS: [f32; 8] = [0.3, -1.2, 2.0, 0.5, -0.7, 0.1, 0.9, 1.4];

    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        let labels = [2, 0];
        for (eps, w) in [(0.0, None), (0.1, Some(vec![0.5, 2.0, 1.0, 1.5]))] {
            let f = |x: &[f32]| cross_entropy(x, &labels, 4, eps, w.as_deref()).map(|r| r.0).unwrap_or(f32::NAN);
            let (_, g) = cross_entropy(&LOGITS, &labels, 4, eps, w.as_deref()).expect("ce");
            assert_close(&g, &numeric_grad(&f, &LOGITS), 2e-3);
        }
    }

    #[test]
    fn cross_entropy_of_uniform_logits_is_log_k() {
        let (l, _) = cross_entropy(&[0.0; 4], &[1], 4, 0.0, None).expect("ce");
        assert!((l - 4f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn mse_and_hinge_gradients_match_finite_differences() {
        let labels = [1, 3];
        let f = |x: &[f32]| mse(x, &labels, 4).map(|r| r.0).unwrap_or(f32::NAN);
        assert_close(&mse(&LOGITS, &labels, 4).expect("mse").1, &numeric_grad(&f, &LOGITS), 2e-3);
        // Hinge is piecewise linear; the test point is away from the kinks.
        let f = |x: &[f32]| hinge(x, &labels, 4).map(|r| r.0).unwrap_or(f32::NAN);
        assert_close(&hinge(&LOGITS, &labels, 4).expect("hinge").1, &numeric_grad(&f, &LOGITS), 2e-3);
    }

    #[test]
    fn distillation_gradient_matches_finite_differences() {
        let teacher = [1.0, 0.2, -0.5, 0.3, 0.0, 2.0, -1.0, 0.4];
        let labels = [2, 1];
        for (alpha, t) in [(0.5, 4.0), (0.0, 2.0), (1.0, 1.0)] {
            let f = |x: &[f32]| distillation(x, &teacher, Some(&labels), 4, alpha, t).map(|r| r.0).unwrap_or(f32::NAN);
            let (_, g) = distillation(&LOGITS, &teacher, Some(&labels), 4, alpha, t).expect("kd");
            assert_close(&g, &numeric_grad(&f, &LOGITS), 2e-3);
        }
        // A student equal to its teacher has zero soft loss.
        let (l, _) = distillation(&teacher, &teacher, None, 4, 0.0, 3.0).expect("kd");
        assert!(l.abs() < 1e-6);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(cross_entropy(&[0.0; 4], &[4], 4, 0.0, None).is_err());
        assert!(cross_entropy(&[f32::NAN; 4], &[0], 4, 0.0, None).is_err());
        assert!(cross_entropy(&[], &[], 4, 0.0, None).is_err());
        assert!(cross_entropy(&[0.0; 3], &[0], 4, 0.0, None).is_err());
        assert!(mse(&[0.0; 4], &[0, 1], 4).is_err());
        assert!(distillation(&[0.0; 4], &[0.0; 4], None, 4, 0.5, 2.0).is_err());
        assert!(Loss::parse("l1").is_err());
    }
}
