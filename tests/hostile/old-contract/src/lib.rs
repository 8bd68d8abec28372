//! A plugin built against medallion:plugin@0.0.9, which the host must refuse
//! with a message that names both versions.

#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "plugin" });
}

struct Old;

impl bindings::exports::medallion::plugin::transform::Guest for Old {
    fn describe() -> String {
        "a plugin from before the contract changed".to_owned()
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export!(Old with_types_in bindings);
