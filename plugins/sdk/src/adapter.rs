//! Maps the generated WIT bindings onto the [`Plugin`] trait.
//!
//! Not for: plugin authors; [`crate::export_plugin!`] names [`Adapter`] for them.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::Arc;

use arrow_schema::SchemaRef;

use crate::bindings::exports::medallion::plugin::transform as wit;
use crate::{Aggregate, Emitter, Error, ErrorKind, Info, Needs, Plugin, Port, ipc};

/// The exported component type for a [`Plugin`] `P`.
pub struct Adapter<P>(PhantomData<P>);

/// One configured instance of `P`.
#[doc(hidden)]
pub struct InstanceOf<P>(RefCell<P>);

impl<P: Plugin> wit::Guest for Adapter<P> {
    type Instance = InstanceOf<P>;

    fn describe() -> wit::PluginInfo {
        P::info().into()
    }
}

impl<P: Plugin> wit::GuestInstance for InstanceOf<P> {
    fn create(config: String) -> Result<wit::Instance, wit::PluginError> {
        let plugin = P::new(&config)?;
        Ok(wit::Instance::new(InstanceOf(RefCell::new(plugin))))
    }

    fn outputs(&self) -> Vec<wit::Port> {
        self.0.borrow().outputs().into_iter().map(Into::into).collect()
    }

    fn needs(&self) -> Vec<wit::InputNeeds> {
        self.0.borrow().needs().into_iter().map(Into::into).collect()
    }

    fn push(&self, port: String, batch: Vec<u8>) -> Result<Vec<wit::Output>, wit::PluginError> {
        let mut plugin = self.0.borrow_mut();
        let mut out = Emitter::default();
        for batch in ipc::decode(batch)? {
            plugin.push(&port, batch, &mut out)?;
        }
        Ok(encode_outputs(out)?)
    }

    fn finish(&self) -> Result<Vec<wit::Output>, wit::PluginError> {
        let mut out = Emitter::default();
        self.0.borrow_mut().finish(&mut out)?;
        Ok(encode_outputs(out)?)
    }
}

fn encode_outputs(out: Emitter) -> Result<Vec<wit::Output>, Error> {
    out.ports
        .into_iter()
        .map(|(port, batches)| {
            let bytes = ipc::encode(&port, &batches)?;
            Ok(wit::Output { port, batches: bytes })
        })
        .collect()
}

impl From<Error> for wit::PluginError {
    fn from(e: Error) -> Self {
        let kind = match e.kind {
            ErrorKind::BadConfig => wit::ErrorKind::BadConfig,
            ErrorKind::BadInput => wit::ErrorKind::BadInput,
            ErrorKind::Internal => wit::ErrorKind::Internal,
        };
        wit::PluginError { kind, message: e.message }
    }
}

impl From<Info> for wit::PluginInfo {
    fn from(info: Info) -> Self {
        wit::PluginInfo {
            name: info.name,
            version: info.version,
            description: info.description,
            inputs: info.inputs.into_iter().map(Into::into).collect(),
            outputs: info.outputs.into_iter().map(Into::into).collect(),
            config_schema: info.config_schema,
            stateless: info.stateless,
        }
    }
}

impl From<Port> for wit::Port {
    fn from(port: Port) -> Self {
        wit::Port { name: port.name, description: port.description, fields: port.schema.map(fields_of) }
    }
}

fn fields_of(schema: SchemaRef) -> Vec<wit::Field> {
    let schema = Arc::unwrap_or_clone(schema);
    schema
        .fields()
        .iter()
        .map(|f| wit::Field { name: f.name().clone(), data_type: f.data_type().to_string(), nullable: f.is_nullable() })
        .collect()
}

impl From<Needs> for wit::InputNeeds {
    fn from(needs: Needs) -> Self {
        wit::InputNeeds {
            port: needs.port,
            computed: needs
                .computed
                .into_iter()
                .map(|c| wit::ComputedColumn {
                    name: c.name,
                    aggregate: match c.aggregate {
                        Aggregate::Count => wit::Aggregate::Count,
                        Aggregate::Sum => wit::Aggregate::Sum,
                        Aggregate::Mean => wit::Aggregate::Mean,
                        Aggregate::Min => wit::Aggregate::Min,
                        Aggregate::Max => wit::Aggregate::Max,
                        Aggregate::RankAscending => wit::Aggregate::RankAscending,
                        Aggregate::RankDescending => wit::Aggregate::RankDescending,
                    },
                    of: c.of,
                    weight: c.weight,
                    per: c.per,
                })
                .collect(),
            sorted_by: needs
                .sorted_by
                .into_iter()
                .map(|k| wit::SortKey { column: k.column, descending: k.descending })
                .collect(),
        }
    }
}
