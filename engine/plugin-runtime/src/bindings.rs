//! The generated bindings, one module per world. This crate is the only place that runs
//! `bindgen!` (checked by `tests/tidy.rs`).

pub mod condition {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "alert-condition",
    });
}

pub mod transform {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "widget-transform",
    });
}

pub mod channel {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "notification-channel",
    });
}
