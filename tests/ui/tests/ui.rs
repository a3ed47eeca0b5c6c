//! The trybuild driver. Snapshots are tied to the compiler (rustc 1.95 here).

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/pass/*.rs");
    cases.compile_fail("tests/fail/*.rs");
}
