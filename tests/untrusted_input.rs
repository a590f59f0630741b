//! Hostile and degenerate input to the model loader, the classifier and the image decoder:
//! oversized files, shapes whose element count overflows or exceeds memory, NaN and infinite
//! weights and inputs, zero-sized and huge images. Each is a clear error raised before any
//! large allocation, never a panic or an abort; the smallest real image still classifies.
//! (README "What bad input does" lists these with the browser-side cases.)

mod common;

use std::io::Write;
use std::path::PathBuf;

use edgetune::base::tensor::Tensor;
use edgetune::exec::Classifier;
use edgetune::model::etm::{ModelFile, Stored};

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgetune-untrusted-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// A safetensors container with one F32 tensor of `shape` over `data_len` bytes and an
/// edgetune header (the loader must refuse it from the numbers alone).
fn container(shape: &str, data_len: usize) -> Vec<u8> {
    let header = format!(
        r#"{{"__metadata__":{{"edgetune":"{{\"format\":\"edgetune-model\",\"version\":1}}"}},"w":{{"dtype":"F32","shape":{shape},"data_offsets":[0,{data_len}]}}}}"#
    );
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(std::iter::repeat_n(0u8, data_len));
    out
}

#[test]
fn shapes_that_overflow_or_exceed_the_data_are_refused_before_allocating() {
    for (shape, len) in [
        ("[4294967296,4294967296]", 4),    // 2^64 elements: the count overflows usize
        ("[18446744073709551615,2]", 4),   // usize::MAX rows
        ("[1073741824,1073741824,16]", 4), // 2^64 again, split over three sides
        ("[268435456]", 4),                // 1 GiB of f32 claimed, 4 bytes present
        ("[2,2]", 4),                      // 16 bytes claimed, 4 present
    ] {
        let e = ModelFile::from_bytes(&container(shape, len)).unwrap_err().to_string();
        assert!(e.contains("not a valid safetensors container") || e.contains("elements"), "{shape}: {e}");
    }
}

#[test]
fn oversized_model_files_are_refused_unread() {
    // A sparse file one byte over the limit: no disk space, and no read is attempted.
    let path = temp("huge.etm");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(edgetune::model::etm::MAX_MODEL_BYTES + 1).unwrap();
    drop(f);
    let e = ModelFile::load(&path).unwrap_err().to_string();
    assert!(e.contains("larger than the") && e.contains("huge.etm"), "{e}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn nan_and_infinite_weights_are_refused_by_name() {
    let Some(path) = common::default_model("f32") else { return };
    let m = ModelFile::load(&path).unwrap();
    let mut names: Vec<&String> =
        m.tensors.iter().filter(|(_, t)| matches!(t, Stored::F32(_))).map(|(n, _)| n).collect();
    names.sort();
    let name = names.iter().find(|n| n.ends_with("bias")).expect("an f32 bias").to_string();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut broken = m.clone();
        let Some(Stored::F32(t)) = broken.tensors.get(&name) else { unreachable!() };
        let mut data = t.data().to_vec();
        data[1] = bad;
        broken.tensors.insert(name.clone(), Stored::F32(Tensor::new(t.shape().to_vec(), data).unwrap()));
        let e = match broken.to_bytes() {
            Ok(bytes) => ModelFile::from_bytes(&bytes).unwrap_err().to_string(),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(&format!("tensor '{name}' holds {bad} at element 1")), "{e}");
    }
}

#[test]
fn nan_and_infinite_inputs_are_refused() {
    let Some(path) = common::default_model("int8") else { return };
    let model = Classifier::load(&path).unwrap();
    let side = model.file.header.graph.input[0];
    for bad in [f32::NAN, f32::INFINITY] {
        let mut x = vec![0.1f32; side * side * 3];
        x[5] = bad;
        let x = Tensor::new(vec![1, side, side, 3], x).unwrap();
        let e = model.logits(x.clone()).unwrap_err().to_string();
        assert!(e.contains(&format!("input element 5 is {bad}")), "{e}");
        assert!(model.embeddings(x).is_err());
    }
}

/// A PNG that is only a signature and a header chunk declaring `w` x `h` RGB.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit, RGB, deflate, no filter, no interlace
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    out.extend(13u32.to_be_bytes());
    out.extend(&ihdr);
    out.extend(crc32(&ihdr).to_be_bytes());
    out
}

#[test]
fn zero_sized_and_huge_images_are_errors_and_a_one_pixel_image_classifies() {
    for (w, h) in [(0, 10), (100_000, 100_000), (16385, 1), (2_000_000_000, 2)] {
        let path = temp(&format!("claims-{w}x{h}.png"));
        std::fs::File::create(&path).unwrap().write_all(&png_header(w, h)).unwrap();
        let e = edgetune::data::images::load_rgb(&path).unwrap_err().to_string();
        assert!(e.contains("cannot decode image") && e.contains(&format!("claims-{w}x{h}.png")), "{w}x{h}: {e}");
        std::fs::remove_file(&path).unwrap();
    }
    // The smallest image is upsampled to the model's input and classified.
    let Some(path) = common::default_model("int8") else { return };
    let model = Classifier::load(&path).unwrap();
    let x = edgetune::model::preprocess::preprocess(&[200, 30, 30], 1, 1, 3, &model.file.header.preprocess).unwrap();
    let logits = model.logits(x).unwrap();
    assert!(logits.data().iter().all(|v| v.is_finite()));
    // Pixel buffers whose size disagrees with the stated size, or whose size overflows.
    let p = &model.file.header.preprocess;
    assert!(edgetune::model::preprocess::preprocess(&[0; 16], 2, 2, 4, p).is_ok());
    assert!(edgetune::model::preprocess::preprocess(&[0; 16], 3, 2, 4, p).is_err());
    assert!(edgetune::model::preprocess::preprocess(&[0; 16], usize::MAX, 2, 4, p).is_err());
    assert!(edgetune::model::preprocess::preprocess(&[], 0, 0, 4, p).is_err());
}
