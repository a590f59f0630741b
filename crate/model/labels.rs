//! Label lists: a text file with one label per line (a leading `background` line, the TFLite
//! 1001-class convention, is dropped), or a JSON object mapping `"0".."N-1"` to names.

use std::path::Path;

use crate::base::error::{Error, Result};

/// Reads labels; `expected` (if given) is the number the model needs.
pub fn read_labels(path: &Path, expected: Option<usize>) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut labels: Vec<String> = if path.extension().is_some_and(|e| e == "json") {
        let map: std::collections::HashMap<String, String> = serde_json::from_str(&text)
            .map_err(|e| Error::parse(path, format!("not a JSON object of index -> label: {e}")))?;
        (0..map.len())
            .map(|i| {
                map.get(&i.to_string()).cloned().ok_or_else(|| Error::parse(path, format!("label {i} is missing")))
            })
            .collect::<Result<_>>()?
    } else {
        text.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
    };
    if labels.first().is_some_and(|l| l == "background") && expected.is_some_and(|n| n + 1 == labels.len()) {
        labels.remove(0);
    }
    if let Some(n) = expected {
        if labels.len() != n {
            return Err(Error::parse(path, format!("{} labels, the model has {n} classes", labels.len())));
        }
    }
    Ok(labels)
}

/// Labels for an imported model of `classes` classes: the given ones (a leading `background`
/// dropped when it is the one extra), or `class 0`, `class 1`, ... when none are given.
pub fn fit_labels(labels: Option<Vec<String>>, classes: usize) -> Result<Vec<String>> {
    match labels {
        None => Ok((0..classes).map(|i| format!("class {i}")).collect()),
        Some(mut l) => {
            if l.len() == classes + 1 && l.first().is_some_and(|b| b == "background") {
                l.remove(0);
            }
            if l.len() != classes {
                return Err(Error::invalid("import", format!("{} labels for {classes} classes", l.len())));
            }
            Ok(l)
        }
    }
}
