//! The container image, checked without a container engine: the build image's Rust is new
//! enough for the locked dependencies (scripts/check-toolchain, which must fail when lowered),
//! dependencies are cached apart from sources, and the runtime keeps its audit trail and health
//! check.

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn check(args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(Path::new(ROOT).join("scripts/check-toolchain"))
        .args(args)
        .output()
        .expect("python3 runs scripts/check-toolchain");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn dockerfile() -> String {
    std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap()
}

#[test]
fn the_toolchain_check_passes_and_fails_when_a_version_is_lowered() {
    let (ok, text) = check(&[]);
    assert!(ok, "{text}");

    let lowered = crate::support::scratch_dir("dockerfile");
    std::fs::create_dir_all(&lowered).unwrap();
    let file = lowered.join("Dockerfile");
    let text = dockerfile();
    let from = text
        .lines()
        .find(|l| l.starts_with("FROM rust:"))
        .expect("a rust build stage");
    std::fs::write(
        &file,
        text.replace(from, "FROM rust:1.80-bookworm AS build"),
    )
    .unwrap();
    let (ok, text) = check(&["--dockerfile", file.to_str().unwrap()]);
    assert!(!ok, "a rust:1.80 build image passed: {text}");
    assert!(
        text.contains("build image rust:1.80 is older than"),
        "{text}"
    );

    let (ok, text) = check(&["--manifest-rust-version", "1.80"]);
    assert!(!ok, "rust-version 1.80 passed: {text}");
    assert!(
        text.contains("Cargo.toml rust-version 1.80 is false"),
        "{text}"
    );
    std::fs::remove_dir_all(lowered).ok();
}

#[test]
fn the_image_caches_dependencies_keeps_its_audit_trail_and_its_health_check() {
    let text = dockerfile();
    let deps = text
        .find("cargo build --release --locked -p understudy")
        .unwrap();
    let sources = text.find("COPY src ./src").unwrap();
    assert!(
        deps < sources,
        "dependencies are built before the sources are copied"
    );
    assert!(text.contains("USER understudy"));
    assert!(text.contains("UNDERSTUDY_AUDIT_DIR=/var/lib/understudy/audit"));
    assert!(text.contains("VOLUME [\"/var/lib/understudy\"]"));
    assert!(text.contains("chown -R understudy:understudy /var/lib/understudy"));
    assert!(text.contains("CMD [\"understudy\", \"healthcheck\", \"127.0.0.1:8080\"]"));
}
