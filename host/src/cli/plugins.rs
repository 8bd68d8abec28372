//! `host plugins list` and `host plugins inspect`.

use std::path::PathBuf;

use clap::Subcommand;
use medallion_plugin::{Catalog, LoadedPlugin, PortInfo, Runtime};

use super::{Failure, plugins_dir};

#[derive(Debug, Subcommand)]
pub(crate) enum PluginsCommand {
    /// List the plugins in the plugins folder: name, version, sha256, file.
    ///
    /// Example: host plugins list --dir dist/plugins
    List {
        /// The plugins folder (default: $MEDALLION_PLUGINS, else dist/plugins).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print everything a plugin says of itself: ports, schemas, config.
    ///
    /// Example: host plugins inspect dist/plugins/clean.wasm
    Inspect {
        /// The plugin's .wasm file.
        file: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(command: PluginsCommand) -> Result<(), Failure> {
    let runtime = Runtime::new(Runtime::default_cache_dir())?;
    match command {
        PluginsCommand::List { dir } => list(&runtime, plugins_dir(dir)),
        PluginsCommand::Inspect { file, json } => inspect(&runtime, file, json),
    }
}

fn list(runtime: &Runtime, dir: PathBuf) -> Result<(), Failure> {
    if !dir.is_dir() {
        return Err(Failure::config(format!(
            "plugins folder {} does not exist\n  hint: build the plugins with `cargo xtask build-plugins`, or pass --dir",
            dir.display()
        )));
    }
    let catalog = Catalog::scan(runtime, &dir)?;
    println!("{:<24} {:<10} {:<16} FILE", "NAME", "VERSION", "SHA256");
    for plugin in catalog.plugins() {
        let info = plugin.info();
        println!("{:<24} {:<10} {:<16} {}", info.name, info.version, &plugin.sha256()[..16], plugin.path().display());
    }
    for (file, error) in catalog.failures() {
        println!("{:<24} {:<10} {:<16} {}", "(unusable)", "-", "-", file.display());
        eprintln!("warning: {error}");
    }
    Ok(())
}

fn inspect(runtime: &Runtime, file: PathBuf, json: bool) -> Result<(), Failure> {
    let plugin = runtime.load(&file)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&as_json(&plugin)).unwrap_or_default());
        return Ok(());
    }
    let info = plugin.info();
    println!("name:        {}", info.name);
    println!("version:     {}", info.version);
    println!("sha256:      {}", plugin.sha256());
    println!("file:        {}", plugin.path().display());
    println!("description: {}", info.description);
    println!("stateless:   {}", info.stateless);
    print_ports("inputs", &info.inputs);
    print_ports("outputs", &info.outputs);
    println!("config (JSON Schema):\n{}", indent(&pretty_json(&info.config_schema)));
    Ok(())
}

fn print_ports(title: &str, ports: &[PortInfo]) {
    println!("{title}:");
    for port in ports {
        println!("  {} — {}", port.name, port.description);
        match &port.schema {
            None => println!("      (any schema)"),
            Some(schema) => {
                for field in schema.fields() {
                    let null = if field.is_nullable() { "null" } else { "not null" };
                    println!("      {}: {} {}", field.name(), field.data_type(), null);
                }
            }
        }
    }
}

fn as_json(plugin: &LoadedPlugin) -> serde_json::Value {
    let info = plugin.info();
    let ports = |ports: &[PortInfo]| -> serde_json::Value {
        ports
            .iter()
            .map(|p| {
                let fields = p.schema.as_ref().map(|s| {
                    s.fields()
                        .iter()
                        .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string(), "nullable": f.is_nullable()}))
                        .collect::<Vec<_>>()
                });
                serde_json::json!({"name": p.name, "description": p.description, "fields": fields})
            })
            .collect()
    };
    serde_json::json!({
        "name": info.name,
        "version": info.version,
        "sha256": plugin.sha256(),
        "file": plugin.path(),
        "description": info.description,
        "stateless": info.stateless,
        "inputs": ports(&info.inputs),
        "outputs": ports(&info.outputs),
        "config_schema": serde_json::from_str::<serde_json::Value>(&info.config_schema).unwrap_or(serde_json::Value::String(info.config_schema.clone())),
    })
}

fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| text.to_owned())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}
