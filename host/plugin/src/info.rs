//! What a plugin says of itself (`describe`), with its ports' schemas
//! parsed into Arrow types.

use std::str::FromStr;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use medallion_window::{Aggregate, Computed, Needs, SortKey};

use super::bindings::exports::medallion::plugin::transform as wit;
use super::error::PluginError;

/// A plugin's self-description, with port schemas parsed into Arrow types.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// Plugin name (what `pipeline.yaml` refers to).
    pub name: String,
    /// Semantic version of the plugin.
    pub version: String,
    /// One line on what it does.
    pub description: String,
    /// Input ports.
    pub inputs: Vec<PortInfo>,
    /// Output ports (before config shapes them).
    pub outputs: Vec<PortInfo>,
    /// JSON Schema of the config.
    pub config_schema: String,
    /// Whether outputs depend on each batch alone.
    pub stateless: bool,
}

/// A port and, when it declares one, its schema.
#[derive(Debug, Clone)]
pub struct PortInfo {
    /// Port name.
    pub name: String,
    /// What flows through it.
    pub description: String,
    /// The exact schema of its batches, or `None` for any schema.
    pub schema: Option<SchemaRef>,
}

impl PluginInfo {
    pub(crate) fn from_wit(raw: wit::PluginInfo) -> Result<Self, PluginError> {
        let ports = |ports: Vec<wit::Port>| -> Result<Vec<PortInfo>, PluginError> {
            ports.into_iter().map(|p| PortInfo::from_wit(&raw.name, p)).collect()
        };
        Ok(PluginInfo {
            inputs: ports(raw.inputs)?,
            outputs: ports(raw.outputs)?,
            name: raw.name,
            version: raw.version,
            description: raw.description,
            config_schema: raw.config_schema,
            stateless: raw.stateless,
        })
    }
}

impl PortInfo {
    pub(crate) fn from_wit(plugin: &str, port: wit::Port) -> Result<Self, PluginError> {
        let schema = match port.fields {
            None => None,
            Some(fields) => {
                let fields = fields
                    .into_iter()
                    .map(|f| {
                        let data_type = DataType::from_str(&f.data_type).map_err(|e| PluginError::BadDescription {
                            plugin: plugin.to_owned(),
                            cause: format!(
                                "port `{}` column `{}` has unknown type `{}`: {e}",
                                port.name, f.name, f.data_type
                            ),
                        })?;
                        Ok(Field::new(f.name, data_type, f.nullable))
                    })
                    .collect::<Result<Vec<_>, PluginError>>()?;
                Some(Arc::new(Schema::new(fields)))
            }
        };
        Ok(PortInfo { name: port.name, description: port.description, schema })
    }
}

/// What an instance asks of its input ports, checked against its ports
/// (`medallion_window::check_ports`).
pub(crate) fn needs_from_wit(info: &PluginInfo, raw: Vec<wit::InputNeeds>) -> Result<Vec<Needs>, PluginError> {
    let needs: Vec<Needs> = raw
        .into_iter()
        .map(|port| Needs {
            port: port.port,
            computed: port
                .computed
                .into_iter()
                .map(|c| Computed {
                    name: c.name,
                    aggregate: match c.aggregate {
                        wit::Aggregate::Count => Aggregate::Count,
                        wit::Aggregate::Sum => Aggregate::Sum,
                        wit::Aggregate::Mean => Aggregate::Mean,
                        wit::Aggregate::Min => Aggregate::Min,
                        wit::Aggregate::Max => Aggregate::Max,
                        wit::Aggregate::RankAscending => Aggregate::RankAscending,
                        wit::Aggregate::RankDescending => Aggregate::RankDescending,
                    },
                    of: c.of,
                    weight: c.weight,
                    per: c.per,
                })
                .collect(),
            sorted_by: port
                .sorted_by
                .into_iter()
                .map(|k| SortKey { column: k.column, descending: k.descending })
                .collect(),
        })
        .collect();
    let inputs: Vec<&str> = info.inputs.iter().map(|p| p.name.as_str()).collect();
    medallion_window::check_ports(&needs, &inputs)
        .map_err(|cause| PluginError::BadDescription { plugin: info.name.clone(), cause })?;
    Ok(needs)
}
