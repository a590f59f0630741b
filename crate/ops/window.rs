//! Sliding-window geometry shared by convolution and pooling, per spatial axis:
//! effective kernel `k_eff = (k - 1) * dilation + 1`;
//! explicit padding: `out = floor((in + pad_begin + pad_end - k_eff) / stride) + 1`
//! (ceil instead of floor in pooling's ceil mode, dropping a last window that would
//! start inside the end padding);
//! TF/ONNX "same": `out = ceil(in / stride)`, `total = max((out - 1) * stride + k_eff - in, 0)`,
//! SAME_UPPER puts the odd extra pixel at the end (`pad_begin = total / 2`, TensorFlow's
//! "same"), SAME_LOWER at the beginning.

use crate::base::error::{Error, Result};

/// Padding of a 2-D window op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Explicit pixels added on each side.
    Explicit { top: usize, left: usize, bottom: usize, right: usize },
    /// Output size `ceil(in / stride)`, extra padding at the end (TensorFlow "SAME", ONNX SAME_UPPER).
    SameUpper,
    /// Output size `ceil(in / stride)`, extra padding at the beginning (ONNX SAME_LOWER).
    SameLower,
}

impl Padding {
    /// No padding ("VALID").
    pub const VALID: Padding = Padding::Explicit { top: 0, left: 0, bottom: 0, right: 0 };
}

impl Default for Padding {
    fn default() -> Self {
        Padding::VALID
    }
}

/// Resolved geometry of one spatial axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Axis {
    pub pad_begin: usize,
    pub out: usize,
}

/// Resolves one axis; `begin`/`end` are the explicit pads when `padding` is explicit.
#[allow(clippy::too_many_arguments)]
pub(crate) fn resolve_axis(
    op: &'static str,
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    padding: Padding,
    explicit: (usize, usize),
    ceil_mode: bool,
) -> Result<Axis> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return Err(Error::invalid(
            op,
            format!("kernel {kernel}, stride {stride} and dilation {dilation} must all be >= 1"),
        ));
    }
    let k_eff = (kernel - 1)
        .checked_mul(dilation)
        .and_then(|v| v.checked_add(1))
        .ok_or_else(|| Error::invalid(op, "kernel * dilation overflows"))?;
    match padding {
        Padding::SameUpper | Padding::SameLower => {
            let out = input.div_ceil(stride);
            let total = ((out.max(1) - 1) * stride).saturating_add(k_eff).saturating_sub(input);
            let pad_begin = if padding == Padding::SameUpper { total / 2 } else { total - total / 2 };
            Ok(Axis { pad_begin, out })
        }
        Padding::Explicit { .. } => {
            let (pb, pe) = explicit;
            let padded = input
                .checked_add(pb)
                .and_then(|v| v.checked_add(pe))
                .ok_or_else(|| Error::invalid(op, format!("padding ({pb}, {pe}) overflows")))?;
            if padded < k_eff {
                return Err(Error::shape(
                    op,
                    format!(
                        "window {k_eff} (kernel {kernel}, dilation {dilation}) is larger than padded input {padded}"
                    ),
                ));
            }
            let span = padded - k_eff;
            let mut out = if ceil_mode { span.div_ceil(stride) + 1 } else { span / stride + 1 };
            // In ceil mode a last window must start inside the input or the begin padding.
            if ceil_mode && (out - 1) * stride >= input + pb {
                out -= 1;
            }
            Ok(Axis { pad_begin: pb, out })
        }
    }
}

/// Explicit (begin, end) pads of the height and width axes.
pub(crate) fn explicit_pads(padding: Padding) -> ((usize, usize), (usize, usize)) {
    match padding {
        Padding::Explicit { top, left, bottom, right } => ((top, bottom), (left, right)),
        _ => ((0, 0), (0, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_upper_matches_tensorflow() {
        // in 224, k 3, s 2: out 112, total pad 1, all at the end.
        let a = resolve_axis("t", 224, 3, 2, 1, Padding::SameUpper, (0, 0), false).unwrap();
        assert_eq!(a, Axis { pad_begin: 0, out: 112 });
        let a = resolve_axis("t", 224, 3, 2, 1, Padding::SameLower, (0, 0), false).unwrap();
        assert_eq!(a, Axis { pad_begin: 1, out: 112 });
        let a = resolve_axis("t", 7, 5, 1, 1, Padding::SameUpper, (0, 0), false).unwrap();
        assert_eq!(a, Axis { pad_begin: 2, out: 7 });
    }

    #[test]
    fn explicit_and_errors() {
        let a = resolve_axis("t", 5, 3, 2, 1, Padding::VALID, (1, 1), false).unwrap();
        assert_eq!(a.out, 3);
        assert!(resolve_axis("t", 2, 5, 1, 1, Padding::VALID, (0, 0), false).is_err());
        assert!(resolve_axis("t", 5, 3, 0, 1, Padding::VALID, (0, 0), false).is_err());
        // ceil mode: 4 wide, k 3, s 2 -> floor 1, ceil 2
        assert_eq!(resolve_axis("t", 4, 3, 2, 1, Padding::VALID, (0, 0), true).unwrap().out, 2);
    }
}
