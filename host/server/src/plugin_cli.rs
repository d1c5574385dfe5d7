//! `telemetryflow plugin check|run`: what an author runs before uploading, with the server's
//! own engine and limits.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use base64::Engine as _;
use plugin_runtime::{
    CompiledPlugin, EvaluationContext, PluginKind, PluginRuntime, QueryResult, RuntimeConfig,
    SeriesStatus,
};
use serde_json::{Value, json};

#[derive(clap::Subcommand)]
pub enum PluginCommand {
    /// Validate a component: print its world, metadata, config schema, imports and exports, or
    /// what is wrong with it (exit status 1).
    Check {
        /// The `.wasm` component.
        file: PathBuf,
        /// The kind it should be: alert-condition, widget-transform or notification-channel.
        #[arg(long)]
        kind: Option<String>,
    },
    /// Run a condition or a transform on local data, with the server's engine and limits.
    Run {
        /// The `.wasm` component.
        file: PathBuf,
        /// Input data: `.json` (an array of row objects, or an object of query name → rows)
        /// or `.arrow` (an Arrow IPC stream or file).
        #[arg(long)]
        input: PathBuf,
        /// The config as JSON text, or `@file.json`.
        #[arg(long, default_value = "{}")]
        config: String,
        /// The state blob a previous run printed (base64), for conditions.
        #[arg(long)]
        state: Option<String>,
    },
}

fn runtime() -> anyhow::Result<PluginRuntime> {
    PluginRuntime::new(RuntimeConfig::default()).map_err(|e| anyhow::anyhow!(e))
}

fn compile(rt: &PluginRuntime, file: &Path, kind: Option<&str>) -> anyhow::Result<CompiledPlugin> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let claimed = match kind {
        None => None,
        Some(k) => Some(PluginKind::parse(k).with_context(|| {
            format!("unknown kind {k:?}: alert-condition, widget-transform or notification-channel")
        })?),
    };
    rt.compile(&bytes, claimed)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Runs a `plugin` subcommand.
///
/// # Errors
/// A plugin that is invalid or fails, or unreadable input.
pub fn run(cmd: PluginCommand) -> anyhow::Result<()> {
    match cmd {
        PluginCommand::Check { file, kind } => {
            let rt = runtime()?;
            let plugin = compile(&rt, &file, kind.as_deref())?;
            let (imports, exports) = rt.interfaces(&plugin);
            let schema: Value = serde_json::from_str(&plugin.metadata.config_schema)
                .unwrap_or_else(|_| json!(plugin.metadata.config_schema));
            let out = json!({
                "valid": true,
                "world": plugin.kind.world(),
                "name": plugin.metadata.name,
                "version": plugin.metadata.version,
                "description": plugin.metadata.description,
                "sha256": plugin.sha256,
                "imports": imports,
                "exports": exports,
                "config_schema": schema,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        PluginCommand::Run {
            file,
            input,
            config,
            state,
        } => {
            let rt = runtime()?;
            let plugin = compile(&rt, &file, None)?;
            let config = match config.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the config file {path}"))?,
                None => config,
            };
            serde_json::from_str::<Value>(&config).context("--config is not JSON")?;
            let errors = rt
                .validate_config(&plugin, &config)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if !errors.is_empty() {
                let list: Vec<String> = errors
                    .iter()
                    .map(|e| {
                        format!(
                            "  {}: {}",
                            if e.path.is_empty() { "/" } else { &e.path },
                            e.message
                        )
                    })
                    .collect();
                bail!("the config is invalid:\n{}", list.join("\n"));
            }
            let inputs = read_inputs(&input)?;
            match plugin.kind {
                PluginKind::AlertCondition => {
                    let state = state
                        .map(|s| base64::engine::general_purpose::STANDARD.decode(s))
                        .transpose()
                        .context("--state is not base64")?;
                    let now = chrono::Utc::now().timestamp_millis();
                    let ctx = EvaluationContext {
                        rule_id: "local".into(),
                        evaluation_time_ms: now,
                        interval_ms: 60_000,
                        range_start_ms: now - 300_000,
                        range_end_ms: now,
                        config,
                        state,
                    };
                    let queries: Vec<QueryResult> = inputs
                        .into_iter()
                        .map(|(name, schema, batches)| {
                            Ok(QueryResult {
                                name,
                                data: ipc(&schema, &batches)?,
                            })
                        })
                        .collect::<anyhow::Result<_>>()?;
                    let e = rt
                        .evaluate(&plugin, &ctx, &queries)
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    let series: Vec<Value> = e
                        .series
                        .iter()
                        .map(|s| {
                            json!({
                                "labels": s.labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                                "status": match s.status {
                                    SeriesStatus::Ok => "ok",
                                    SeriesStatus::Alerting => "alerting",
                                    SeriesStatus::NoData => "no_data",
                                    SeriesStatus::Error => "error",
                                },
                                "value": s.value,
                                "severity": s.severity,
                                "annotations": s.annotations.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                            })
                        })
                        .collect();
                    let out = json!({
                        "series": series,
                        "state": e.state.map(|s| base64::engine::general_purpose::STANDARD.encode(s)),
                    });
                    println!("{}", serde_json::to_string_pretty(&out)?);
                    Ok(())
                }
                PluginKind::WidgetTransform => {
                    let Some((_, schema, batches)) = inputs.into_iter().next() else {
                        bail!("no input data");
                    };
                    let out = rt
                        .transform(&plugin, &ipc(&schema, &batches)?, &config)
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    let reader = arrow::ipc::reader::StreamReader::try_new(out.as_slice(), None)
                        .context("the transform's output is not an Arrow IPC stream")?;
                    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
                    for b in reader {
                        writer.write(&b.context("a bad output batch")?)?;
                    }
                    writer.finish()?;
                    println!("{}", String::from_utf8_lossy(&writer.into_inner()));
                    Ok(())
                }
                PluginKind::NotificationChannel => {
                    bail!("channels are run by the server's delivery path, not locally")
                }
            }
        }
    }
}

type Input = (String, SchemaRef, Vec<RecordBatch>);

fn ipc(schema: &SchemaRef, batches: &[RecordBatch]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, schema)?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()?;
    drop(w);
    Ok(out)
}

fn rows_to_batch(rows: &[Value]) -> anyhow::Result<(SchemaRef, Vec<RecordBatch>)> {
    let schema = Arc::new(
        arrow::json::reader::infer_json_schema_from_iterator(rows.iter().map(Ok))
            .context("cannot infer a schema from the rows")?,
    );
    let mut decoder = arrow::json::ReaderBuilder::new(Arc::clone(&schema)).build_decoder()?;
    decoder.serialize(rows)?;
    let batch = decoder.flush()?.into_iter().collect();
    Ok((schema, batch))
}

fn read_inputs(path: &Path) -> anyhow::Result<Vec<Input>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "json" {
        let v: Value = serde_json::from_slice(&bytes).context("the input is not JSON")?;
        return match v {
            Value::Array(rows) => {
                let (schema, batches) = rows_to_batch(&rows)?;
                Ok(vec![("A".to_string(), schema, batches)])
            }
            Value::Object(queries) => queries
                .into_iter()
                .map(|(name, rows)| {
                    let Value::Array(rows) = rows else {
                        bail!("input {name:?} must be an array of row objects");
                    };
                    let (schema, batches) = rows_to_batch(&rows)?;
                    Ok((name, schema, batches))
                })
                .collect(),
            _ => bail!("the JSON input must be an array of rows or an object of query → rows"),
        };
    }
    if let Ok(reader) = arrow::ipc::reader::StreamReader::try_new(bytes.as_slice(), None) {
        let schema = reader.schema();
        let batches = reader.collect::<Result<Vec<_>, _>>()?;
        return Ok(vec![("A".to_string(), schema, batches)]);
    }
    let reader = arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)
        .context("the input is neither JSON nor an Arrow IPC stream or file")?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok(vec![("A".to_string(), schema, batches)])
}
