//! Guest components built for `wasm32-wasip2` with plain cargo, once per test process, into
//! target dirs of their own: workspace plugin crates, or crates outside it (`examples/`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

/// The component bytes of workspace package `package`, built for `wasm32-wasip2` with the
/// workspace's `plugin` profile.
///
/// # Panics
/// When the build fails (the message says why, e.g. a missing `wasm32-wasip2` target).
pub fn guest(package: &str, target_dir: &Path) -> Vec<u8> {
    // The workspace's `plugin` profile, as `host/builtin-plugins/build.rs` builds, into the same
    // dir: one build serves both.
    build(
        package,
        &["-p", package],
        "plugin",
        &target_dir.join("guests"),
    )
}

/// The component of the crate at `manifest`, outside the workspace (e.g. `examples/…`).
///
/// # Panics
/// As [`guest`].
#[allow(dead_code)]
pub fn guest_at(manifest: &Path, package: &str, target_dir: &Path) -> Vec<u8> {
    let path = manifest.to_string_lossy().into_owned();
    build(
        package,
        &["--manifest-path", &path],
        "release",
        &target_dir.join(format!("guests-{package}")),
    )
}

fn build(package: &str, select: &[&str], profile: &str, target_dir: &Path) -> Vec<u8> {
    static BUILT: OnceLock<Mutex<HashMap<String, Vec<u8>>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = built.get(package) {
        return b.clone();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["build", "--profile", profile, "--target", "wasm32-wasip2"])
        .args(select)
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "building {package} for wasm32-wasip2 failed (is the target installed? `rustup target add wasm32-wasip2`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = target_dir
        .join("wasm32-wasip2")
        .join(profile)
        .join(format!("{}.wasm", package.replace('-', "_")));
    let bytes = std::fs::read(&file).expect("the built component");
    built.insert(package.to_string(), bytes.clone());
    bytes
}
