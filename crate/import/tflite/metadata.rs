//! TFLite Support metadata (what Model Maker, MediaPipe's classifiers and TFLite Support's
//! metadata writers put in a model): the class names and the input normalization, so a model
//! that carries them needs no separate labels file.
//!
//! Where they are:
//! ```text
//! Model.metadata["TFLITE_METADATA"].buffer -> ModelMetadata flatbuffer (identifier "M001")
//!   subgraph_metadata[0].input_tensor_metadata[0].process_units[i]: NormalizationOptions
//!       float input = (pixel - mean[c]) / std[c]          (one value, or one per channel)
//!   subgraph_metadata[0].output_tensor_metadata[0].associated_files[j]:
//!       type TENSOR_AXIS_LABELS (2): one class name per line, in a file of that name in
//!       the zip archive appended to the .tflite file (the model file is also a valid zip)
//! ```
//! Among several label files (one per locale), the one without a locale is taken, else the
//! first. The zip reader takes the end-of-central-directory record in the file's last
//! 64 KiB, allows bytes before the archive (offsets are shifted by the flatbuffer's length, as
//! Python's `zipfile` does), and reads stored (0) or deflated (8) entries; no zip64, no
//! encryption. Every offset and length is checked against the file.

use super::schema::{self, AssociatedFile, Model};
use crate::base::error::{Error, Result};

/// `AssociatedFileType.TENSOR_AXIS_LABELS`.
const TENSOR_AXIS_LABELS: i8 = 2;
/// Largest label file read (an ImageNet label file is 21 KB).
const MAX_LABEL_FILE: usize = 16 << 20;

/// What the importer uses from a model's metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TfliteMetadata {
    /// Class names from the output tensor's label file.
    pub labels: Option<Vec<String>>,
    /// The input's `(mean, std)` in pixel units: one value or one per channel.
    pub normalization: Option<(Vec<f32>, Vec<f32>)>,
}

fn err(file: &str, msg: impl std::fmt::Display) -> Error {
    Error::invalid("import", format!("{file}: TFLite metadata: {msg}"))
}

/// The metadata of `model` (whose file is `bytes`); `None` for a model without any.
pub fn read(bytes: &[u8], model: &Model, file: &str) -> Result<Option<TfliteMetadata>> {
    let Some(entry) = model.metadata().and_then(|m| m.iter().find(|m| m.name() == Some("TFLITE_METADATA"))) else {
        return Ok(None);
    };
    let b = entry.buffer().unwrap_or(0) as usize;
    let buffers = model.buffers().ok_or_else(|| err(file, "the model has no buffers"))?;
    if b >= buffers.len() {
        return Err(err(file, format!("its buffer {b} does not exist")));
    }
    let data = buffers.get(b).data().map(|d| d.bytes()).unwrap_or(&[]);
    let meta = schema::model_metadata(data).map_err(|e| err(file, format!("not a valid metadata flatbuffer: {e}")))?;
    let Some(sub) = meta.subgraph_metadata().filter(|s| !s.is_empty()).map(|s| s.get(0)) else {
        return Ok(Some(TfliteMetadata::default()));
    };
    let normalization = match first_tensor(sub.input_tensor_metadata())
        .and_then(|t| t.process_units())
        .and_then(|units| units.iter().find_map(|u| u.normalization()))
    {
        Some(n) => {
            let mean: Vec<f32> = n.mean().map(|v| v.iter().collect()).unwrap_or_default();
            let std: Vec<f32> = n.std().map(|v| v.iter().collect()).unwrap_or_default();
            let ok = |v: &[f32]| matches!(v.len(), 1 | 3) && v.iter().all(|x| x.is_finite());
            if !ok(&mean) || !ok(&std) || std.contains(&0.0) {
                return Err(err(
                    file,
                    format!("normalization mean {mean:?}, std {std:?} (want 1 or 3 finite values, std not 0)"),
                ));
            }
            Some((mean, std))
        }
        None => None,
    };
    let label_file = first_tensor(sub.output_tensor_metadata()).and_then(|t| t.associated_files()).and_then(|files| {
        let labels: Vec<AssociatedFile> = files.iter().filter(|f| f.file_type() == Some(TENSOR_AXIS_LABELS)).collect();
        labels.iter().find(|f| f.locale().is_none_or(str::is_empty)).or(labels.first()).and_then(|f| f.name())
    });
    let labels = match label_file {
        Some(name) => {
            let text = zip_entry(bytes, name)
                .map_err(|e| err(file, format!("label file '{name}': {e}")))?
                .ok_or_else(|| err(file, format!("label file '{name}' is named but not in the model's archive")))?;
            let text = String::from_utf8(text).map_err(|_| err(file, format!("label file '{name}' is not UTF-8")))?;
            Some(text.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect())
        }
        None => None,
    };
    Ok(Some(TfliteMetadata { labels, normalization }))
}

type TensorList<'a> = flatbuffers::Vector<'a, flatbuffers::ForwardsUOffset<schema::TensorMetadata<'a>>>;

fn first_tensor(v: Option<TensorList<'_>>) -> Option<schema::TensorMetadata<'_>> {
    v.filter(|v| !v.is_empty()).map(|v| v.get(0))
}

fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize)
}

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize)
}

/// The contents of entry `name` of the zip archive at the end of `bytes` (`None`: no archive,
/// or no such entry).
pub fn zip_entry(bytes: &[u8], name: &str) -> std::result::Result<Option<Vec<u8>>, String> {
    const EOCD: usize = 0x0605_4b50;
    const CENTRAL: usize = 0x0201_4b50;
    const LOCAL: usize = 0x0403_4b50;
    let Some(last) = bytes.len().checked_sub(22) else { return Ok(None) };
    let Some(eocd) = (last.saturating_sub(u16::MAX as usize)..=last).rev().find(|&i| u32_at(bytes, i) == Some(EOCD))
    else {
        return Ok(None);
    };
    let bad = |what: &str| format!("the zip archive's {what} is out of bounds");
    let (entries, cd_size, cd_offset) = (
        u16_at(bytes, eocd + 10).ok_or_else(|| bad("directory"))?,
        u32_at(bytes, eocd + 12).ok_or_else(|| bad("directory"))?,
        u32_at(bytes, eocd + 16).ok_or_else(|| bad("directory"))?,
    );
    // Bytes before the archive (the flatbuffer) shift every offset by the same amount.
    let shift = eocd.checked_sub(cd_size).and_then(|s| s.checked_sub(cd_offset)).ok_or_else(|| bad("directory"))?;
    let mut at = cd_offset + shift;
    for _ in 0..entries {
        if u32_at(bytes, at) != Some(CENTRAL) {
            return Err(bad("directory entry"));
        }
        let field = |o: usize, four: bool| if four { u32_at(bytes, at + o) } else { u16_at(bytes, at + o) };
        let (Some(method), Some(crc), Some(packed), Some(size), Some(n), Some(extra), Some(comment), Some(local)) = (
            field(10, false),
            field(16, true),
            field(20, true),
            field(24, true),
            field(28, false),
            field(30, false),
            field(32, false),
            field(42, true),
        ) else {
            return Err(bad("directory entry"));
        };
        let entry_name = bytes.get(at + 46..at + 46 + n).ok_or_else(|| bad("entry name"))?;
        at += 46 + n + extra + comment;
        if entry_name != name.as_bytes() {
            continue;
        }
        // Checked sums: offsets read from the file may be anything (and usize is 32 bits in wasm).
        let local = local.checked_add(shift).ok_or_else(|| bad("local header"))?;
        if u32_at(bytes, local) != Some(LOCAL) {
            return Err(bad("local header"));
        }
        let (ln, lextra) = (
            u16_at(bytes, local + 26).ok_or_else(|| bad("local header"))?,
            u16_at(bytes, local + 28).ok_or_else(|| bad("local header"))?,
        );
        let start = local.checked_add(30 + ln + lextra).ok_or_else(|| bad("local header"))?;
        let end = start.checked_add(packed).ok_or_else(|| bad("entry data"))?;
        let data = bytes.get(start..end).ok_or_else(|| bad("entry data"))?;
        if size > MAX_LABEL_FILE {
            return Err(format!("{size} bytes (more than {MAX_LABEL_FILE})"));
        }
        let contents = match method {
            0 if packed == size => data.to_vec(),
            8 => miniz_oxide::inflate::decompress_to_vec_with_limit(data, size)
                .map_err(|e| format!("its deflated data is corrupt ({:?})", e.status))?,
            m => {
                return Err(format!(
                    "zip compression method {m} with {packed} -> {size} bytes (only stored and deflate)"
                ))
            }
        };
        if contents.len() != size || crc32(&contents) as usize != crc {
            return Err("its contents do not match the archive's size and CRC-32".into());
        }
        return Ok(Some(contents));
    }
    Ok(None)
}

/// CRC-32 (IEEE 802.3, reflected, as zip stores it), bit by bit: label files are small.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zip archive by hand (stored entries), after `prefix` bytes, the way TFLite Support
    /// appends one to a model: local headers, central directory, end record; offsets from the
    /// archive's own start.
    fn zip_after(prefix: &[u8], files: &[(&str, &[u8])]) -> Vec<u8> {
        let (mut body, mut dir) = (vec![], vec![]);
        for (name, data) in files {
            let offset = body.len() as u32;
            let n = name.len() as u16;
            let len = data.len() as u32;
            body.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            body.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            body.extend_from_slice(&crc32(data).to_le_bytes());
            body.extend_from_slice(&len.to_le_bytes());
            body.extend_from_slice(&len.to_le_bytes());
            body.extend_from_slice(&n.to_le_bytes());
            body.extend_from_slice(&0u16.to_le_bytes());
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(data);
            dir.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            dir.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            dir.extend_from_slice(&crc32(data).to_le_bytes());
            dir.extend_from_slice(&len.to_le_bytes());
            dir.extend_from_slice(&len.to_le_bytes());
            dir.extend_from_slice(&n.to_le_bytes());
            dir.extend_from_slice(&[0; 12]);
            dir.extend_from_slice(&offset.to_le_bytes());
            dir.extend_from_slice(name.as_bytes());
        }
        let mut out = prefix.to_vec();
        let cd_offset = body.len() as u32;
        out.extend_from_slice(&body);
        out.extend_from_slice(&dir);
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(dir.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out
    }

    #[test]
    fn zip_entries_after_a_prefix_are_found_and_bad_archives_are_errors() {
        let z = zip_after(b"flatbuffer bytes", &[("a.txt", b"alpha\n"), ("labels.txt", b"cat\ndog\n")]);
        assert_eq!(zip_entry(&z, "labels.txt").unwrap().unwrap(), b"cat\ndog\n");
        assert_eq!(zip_entry(&z, "a.txt").unwrap().unwrap(), b"alpha\n");
        assert_eq!(zip_entry(&z, "missing.txt").unwrap(), None);
        assert_eq!(zip_entry(b"no archive here at all, just bytes", "labels.txt").unwrap(), None);
        // A changed byte of the data (CRC-32), a cut inside a local header, or a directory
        // pointing past the end: errors.
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        let mut flipped = z.clone();
        let at = flipped.windows(3).position(|w| w == b"dog").unwrap();
        flipped[at] = b'h';
        assert!(zip_entry(&flipped, "labels.txt").unwrap_err().contains("CRC-32"));
        let mut cut = z.clone();
        cut.drain(20..30);
        assert!(zip_entry(&cut, "a.txt").is_err());
        let mut wild = z.clone();
        let n = wild.len();
        wild[n - 6..n - 2].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(zip_entry(&wild, "labels.txt").is_err());
    }
}
