//! The plugins that ship inside the server binary, visible to every workspace: alert conditions
//! (`threshold`, `absence`, `rate-of-change`, `z-score`) and widget transforms
//! (`moving-average`, `top-k`, `rate`, `percent-change`, `fill-gaps`) and notification channels
//! (`webhook`, `slack`, `pagerduty`, `telegram`, `msteams`, `discord`, `email`, `sms`).
//!
//! `build.rs` builds them from `plugins/` for `wasm32-wasip2` with plain cargo, so a fresh
//! checkout's `cargo run` ships them with no extra step (the `wasm32-wasip2` target must be
//! installed; `rust-toolchain.toml` lists it). They go through the same validation and limits
//! as an uploaded plugin.

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

#[cfg(test)]
mod tests {
    #[test]
    fn every_builtin_is_a_component() {
        assert!(!super::ALL.is_empty());
        for (name, bytes) in super::ALL {
            assert_eq!(&bytes[..4], b"\0asm", "{name}");
            assert_eq!(&bytes[6..8], &[0x01, 0x00], "{name} is a component");
        }
    }
}
