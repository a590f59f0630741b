//! The reference kernels against ONNX's own backend node tests (Debian libonnx-testdata).

mod common;

use edgetune::import::onnx::conformance::{read_list, run_suite, Outcome};

#[test]
fn required_node_tests_all_pass() {
    let Some(root) = common::onnx_node_tests() else { return };
    let Some(list) = common::require(
        common::shared_dir().join("conformance/onnx-node-required.txt"),
        "the required-test list",
        "expected ../shared beside the repository",
    ) else {
        return;
    };
    let names = read_list(&list).unwrap();
    assert_eq!(names.len(), 81, "the shared list names 81 tests");
    let mut failures = vec![];
    let s = run_suite(&root, Some(&names), |name, o| {
        if o != &Outcome::Pass {
            failures.push(format!("{name}: {o:?}"));
        }
    })
    .unwrap();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!((s.passed, s.failed, s.skipped), (81, 0, 0));
}

#[test]
fn whole_node_suite_has_no_failures() {
    // Every test whose ops the engine implements must pass; the rest are skipped with a reason.
    let Some(root) = common::onnx_node_tests() else { return };
    let mut failures = vec![];
    let s = run_suite(&root, None, |name, o| {
        if let Outcome::Fail(why) = o {
            failures.push(format!("{name}: {why}"));
        }
    })
    .unwrap();
    eprintln!("whole ONNX node suite: {s}");
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(s.passed >= 81, "{s}");
}

#[test]
fn missing_test_in_only_list_fails() {
    let Some(root) = common::onnx_node_tests() else { return };
    let names = vec!["test_relu".to_string(), "test_does_not_exist".to_string()];
    let mut seen = vec![];
    let s = run_suite(&root, Some(&names), |n, o| seen.push((n.to_string(), o.clone()))).unwrap();
    assert_eq!((s.passed, s.failed, s.skipped), (1, 1, 0));
    assert!(matches!(&seen[1].1, Outcome::Fail(m) if m.contains("no such test")));
}
