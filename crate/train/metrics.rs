//! Classification metrics from a confusion matrix `m[true][predicted]` (counts):
//! accuracy `= trace / total`; per class `c`: precision `= m[c][c] / sum_t m[t][c]`,
//! recall `= m[c][c] / sum_p m[c][p]`, F1 `= 2 P R / (P + R)` (0 where undefined).

use crate::base::error::{Error, Result};

/// Counts of (true class, predicted class) pairs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Confusion {
    pub classes: usize,
    /// Row-major `[true][predicted]`.
    pub counts: Vec<u64>,
}

/// Precision, recall and F1 of one class.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

impl Confusion {
    pub fn new(classes: usize) -> Self {
        Confusion { classes, counts: vec![0; classes * classes] }
    }

    /// Builds the matrix from parallel label and prediction lists.
    pub fn from_predictions(classes: usize, truth: &[usize], predicted: &[usize]) -> Result<Self> {
        if truth.len() != predicted.len() {
            return Err(Error::shape("confusion", format!("{} labels, {} predictions", truth.len(), predicted.len())));
        }
        let mut c = Self::new(classes);
        for (&t, &p) in truth.iter().zip(predicted) {
            c.add(t, p)?;
        }
        Ok(c)
    }

    pub fn add(&mut self, truth: usize, predicted: usize) -> Result<()> {
        if truth >= self.classes || predicted >= self.classes {
            return Err(Error::invalid(
                "confusion",
                format!("class {truth} or {predicted} outside 0..{}", self.classes),
            ));
        }
        self.counts[truth * self.classes + predicted] += 1;
        Ok(())
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn accuracy(&self) -> f64 {
        let correct: u64 = (0..self.classes).map(|c| self.counts[c * self.classes + c]).sum();
        correct as f64 / self.total().max(1) as f64
    }

    pub fn scores(&self, c: usize) -> ClassScores {
        let k = self.classes;
        let tp = self.counts[c * k + c] as f64;
        let predicted: u64 = (0..k).map(|t| self.counts[t * k + c]).sum();
        let support: u64 = self.counts[c * k..(c + 1) * k].iter().sum();
        let ratio = |a: f64, b: u64| if b == 0 { 0.0 } else { a / b as f64 };
        let (precision, recall) = (ratio(tp, predicted), ratio(tp, support));
        let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
        ClassScores { precision, recall, f1, support }
    }

    /// A plain-text report: the matrix with class names, then per-class scores.
    pub fn report(&self, names: &[String]) -> String {
        let k = self.classes;
        let name = |c: usize| names.get(c).cloned().unwrap_or_else(|| c.to_string());
        let w = (0..k).map(|c| name(c).chars().count()).max().unwrap_or(1).clamp(5, 14);
        let short = |c: usize| name(c).chars().take(w).collect::<String>();
        let mut s = format!("confusion matrix (rows: true class, columns: predicted)\n{:>w$} ", "");
        for c in 0..k {
            s += &format!("{:>6}", c);
        }
        s.push('\n');
        for t in 0..k {
            s += &format!("{:>w$} ", short(t));
            for p in 0..k {
                s += &format!("{:>6}", self.counts[t * k + p]);
            }
            s.push('\n');
        }
        s += &format!("{:>w$} {:>9} {:>9} {:>9} {:>8}\n", "class", "precision", "recall", "F1", "support");
        for c in 0..k {
            let sc = self.scores(c);
            s += &format!(
                "{:>w$} {:>9.3} {:>9.3} {:>9.3} {:>8}\n",
                short(c),
                sc.precision,
                sc.recall,
                sc.f1,
                sc.support
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_by_hand() {
        // truth:     0 0 0 1 1 2
        // predicted: 0 0 1 1 2 2
        let c = Confusion::from_predictions(3, &[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2]).unwrap();
        assert!((c.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        let s0 = c.scores(0);
        assert_eq!((s0.precision, s0.recall, s0.support), (1.0, 2.0 / 3.0, 3));
        let s1 = c.scores(1);
        assert_eq!((s1.precision, s1.recall), (0.5, 0.5));
        assert!((c.scores(2).f1 - 2.0 / 3.0).abs() < 1e-12);
        assert!(c.report(&["cat".into(), "dog".into(), "bird".into()]).contains("precision"));
        assert!(Confusion::from_predictions(3, &[3], &[0]).is_err());
    }
}
