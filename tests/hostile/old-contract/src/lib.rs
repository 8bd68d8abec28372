//! A plugin built against medallion:plugin@0.1.0, the contract before
//! `needs`, which the host must refuse with a message that names both
//! versions (and the way out: rebuild with the current SDK).

#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "plugin" });
}

use bindings::exports::medallion::plugin::transform::{
    ErrorKind, Guest, GuestInstance, Instance, Output, PluginError, PluginInfo, Port,
};

struct Old;

impl Guest for Old {
    type Instance = Old;

    fn describe() -> PluginInfo {
        PluginInfo {
            name: "old-contract".to_owned(),
            version: "0.1.0".to_owned(),
            description: "a plugin from before the contract changed".to_owned(),
            inputs: vec![Port { name: "in".to_owned(), description: String::new(), fields: None }],
            outputs: vec![Port { name: "out".to_owned(), description: String::new(), fields: None }],
            config_schema: "{}".to_owned(),
            stateless: true,
        }
    }
}

impl GuestInstance for Old {
    fn create(_config: String) -> Result<Instance, PluginError> {
        Ok(Instance::new(Old))
    }

    fn outputs(&self) -> Vec<Port> {
        Self::describe().outputs
    }

    fn push(&self, _port: String, batch: Vec<u8>) -> Result<Vec<Output>, PluginError> {
        Ok(vec![Output { port: "out".to_owned(), batches: batch }])
    }

    fn finish(&self) -> Result<Vec<Output>, PluginError> {
        Err(PluginError { kind: ErrorKind::Internal, message: "never called: the host refuses this plugin".to_owned() })
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export!(Old with_types_in bindings);
