//! Builds the built-in plugins (workspace crates under `plugins/`) for `wasm32-wasip2` with plain
//! cargo and embeds the components. The nested build uses a target dir of its own next to the
//! outer one (`<target>/tmp/guests`, which the test suite's guest builds share), so the two cargo
//! invocations never wait on each other's lock; cargo's fingerprints keep it from going stale.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The packages shipped in the server, in the order the API lists them.
const PACKAGES: &[&str] = &[
    "condition-threshold",
    "condition-absence",
    "condition-rate-of-change",
    "condition-z-score",
    "transform-moving-average",
    "transform-top-k",
    "transform-rate",
    "transform-percent-change",
    "transform-fill-gaps",
    "channel-webhook",
    "channel-slack",
    "channel-pagerduty",
    "channel-telegram",
    "channel-msteams",
    "channel-discord",
    "channel-email",
    "channel-sms",
];

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("the workspace root")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    for watched in ["plugins", "wit", "Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out; the nested build goes to
    // <target>/tmp/guests.
    let target = out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.join("target"));
    let guest_dir = target.join("tmp").join("guests");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--profile",
        "plugin",
        "--target",
        "wasm32-wasip2",
        "--target-dir",
    ])
    .arg(&guest_dir)
    .current_dir(&root);
    for p in PACKAGES {
        cmd.args(["-p", p]);
    }
    // What cargo tells a build script about the outer build must not leak into the nested one
    // (clippy's wrapper, the host's rustflags, the outer target dir and profile).
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "TARGET",
        "HOST",
        "OUT_DIR",
        "OPT_LEVEL",
        "PROFILE",
        "DEBUG",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    for (k, _) in std::env::vars() {
        if k.starts_with("CARGO_PROFILE_")
            || k.starts_with("CARGO_CFG_")
            || k.starts_with("CARGO_FEATURE_")
        {
            cmd.env_remove(k);
        }
    }
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run cargo to build the built-in plugins: {e}"),
    };
    if !out.status.success() {
        panic!(
            "building the built-in plugins for wasm32-wasip2 failed (is the target installed? \
             `rustup target add wasm32-wasip2`):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let mut code = String::from(
        "/// The built-in plugins: (package, component bytes).\npub static ALL: &[(&str, &[u8])] = &[\n",
    );
    for p in PACKAGES {
        let file = format!("{}.wasm", p.replace('-', "_"));
        let src = guest_dir.join("wasm32-wasip2").join("plugin").join(&file);
        let dst = out_dir.join(&file);
        if let Err(e) = std::fs::copy(&src, &dst) {
            panic!("the built component {} is missing: {e}", src.display());
        }
        code.push_str(&format!(
            "    ({p:?}, include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{file}\"))),\n"
        ));
    }
    code.push_str("];\n");
    if let Err(e) = std::fs::write(out_dir.join("builtins.rs"), code) {
        panic!("cannot write builtins.rs: {e}");
    }
}
