//! Native threads give the same results as one thread, bit for bit: the kernels' row blocks
//! (`base::pool::parallel_for`) and the item-level parallelism over images
//! (`base::pool::map_items`) in `edgetune embed`, `fewshot`, `quantize` and `eval`.
//!
//! The pool size is process-wide and the tests of one binary run concurrently, so only the
//! first test changes it; the second runs the CLI as separate processes with `--threads`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use edgetune::base::pool;
use edgetune::data::images::load_preprocessed;
use edgetune::exec::Classifier;

/// The default Lite0 models (int8 and f32) on four shared photos: embeddings and logits with
/// 1, 2 and 3 threads are identical to the bit.
#[test]
fn kernels_split_over_threads_give_identical_embeddings_and_logits() {
    let photos: Vec<PathBuf> = ["parrot.jpg", "cat.bmp", "sunflower.bmp", "hot_dog.jpg"]
        .iter()
        .filter_map(|p| common::shared(&format!("data/photos/{p}")))
        .collect();
    for precision in ["int8", "f32"] {
        let Some(model) = common::default_model(precision) else { return };
        let c = Classifier::load(&model).unwrap();
        let p = c.file.header.preprocess;
        let run = |threads: usize| {
            pool::set_threads(threads);
            assert_eq!(pool::threads(), threads, "the pool did not start {threads} threads");
            photos
                .iter()
                .map(|path| {
                    let (e, l) = c.embeddings_and_logits(load_preprocessed(path, &p).unwrap()).unwrap();
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
                    (bits(e.data()), bits(l.data()))
                })
                .collect::<Vec<_>>()
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(one == run(threads), "{precision}: {threads} threads differ from one");
        }
        // Item-level parallelism over the same photos: the same values, in index order.
        pool::set_threads(2);
        let items = pool::map_items(photos.len(), &|i| {
            let e = c.embeddings(load_preprocessed(&photos[i], &p)?)?;
            Ok(e.data().iter().map(|x| x.to_bits()).collect::<Vec<u32>>())
        })
        .unwrap();
        assert_eq!(items, one.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>(), "{precision}: map_items");
        println!("{precision}: {} photos identical with 1, 2 and 3 threads", photos.len());
    }
    // The first error by index is the one returned, whichever thread fails first.
    let err = pool::map_items(8, &|i| {
        if i >= 3 {
            Err(edgetune::Error::invalid("t", format!("item {i}")))
        } else {
            Ok(i)
        }
    })
    .unwrap_err();
    assert!(err.to_string().contains("item 3"), "{err}");
}

fn edgetune(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_edgetune")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "edgetune {} failed:\n{text}", args.join(" "));
    text
}

fn scratch(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("edgetune-threads-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `embed`, `fewshot` and `quantize` with `--threads 1` and `--threads 2` write identical
/// files (features, few-shot rows, quantized model); `eval` prints identical scores.
#[test]
fn cli_results_do_not_depend_on_the_thread_count() {
    let (Some(int8), Some(f32)) = (common::default_model("int8"), common::default_model("f32")) else { return };
    let (Some(train), Some(test)) = (common::shared("data/cifar10/train.bin"), common::shared("data/cifar10/test.bin"))
    else {
        return;
    };
    let (train, test) = (format!("cifar10:{}", s(&train)), format!("cifar10:{}", s(&test)));
    let dir = scratch("cli");
    let file = |t: usize, name: &str| dir.join(format!("{t}-{name}"));
    let mut eval_scores = vec![];
    for t in [1usize, 2] {
        let threads = t.to_string();
        edgetune(&[
            "embed",
            "--model",
            s(&int8),
            "--data",
            &test,
            "--limit",
            "40",
            "--out",
            s(&file(t, "e.npy")),
            "--threads",
            &threads,
        ]);
        edgetune(&[
            "fewshot",
            "--backbone",
            s(&int8),
            "--data",
            &train,
            "--test",
            &test,
            "--per-class",
            "3",
            "--epochs",
            "8",
            "--augment",
            "1",
            "--test-limit",
            "60",
            "--json",
            s(&file(t, "fewshot.json")),
            "--threads",
            &threads,
        ]);
        edgetune(&[
            "quantize",
            "--calib",
            &train,
            "--samples",
            "5",
            s(&f32),
            s(&file(t, "q.etm")),
            "--threads",
            &threads,
        ]);
        let out = edgetune(&[
            "eval",
            "--model",
            s(&int8),
            "--backend",
            "cpu",
            "--reference",
            s(&f32),
            "--data",
            &test,
            "--limit",
            "24",
            "--threads",
            &threads,
        ]);
        // Everything but the timing lines.
        eval_scores.push(out.lines().filter(|l| !l.contains("ms/image")).map(str::to_string).collect::<Vec<_>>());
    }
    for name in ["e.npy", "q.etm"] {
        let (a, b) = (std::fs::read(file(1, name)).unwrap(), std::fs::read(file(2, name)).unwrap());
        assert!(a == b, "{name} differs between 1 and 2 threads");
    }
    let rows = |t| {
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(file(t, "fewshot.json")).unwrap()).unwrap();
        doc["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["accuracy"].to_string(), r["final_train_loss"].to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(1), rows(2), "few-shot rows differ between 1 and 2 threads");
    assert_eq!(eval_scores[0], eval_scores[1], "eval scores differ between 1 and 2 threads");
    assert!(eval_scores[0].iter().any(|l| l.starts_with("top-1 agreement")), "{:?}", eval_scores[0]);
    let _ = std::fs::remove_dir_all(&dir);
}
