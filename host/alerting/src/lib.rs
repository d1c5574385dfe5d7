//! Alert evaluation at run time, the IO half of `engine/alert`: the [`Scheduler`] runs every
//! enabled rule on its schedule; the [`Evaluator`] runs one evaluation (queries through the
//! query engine → Arrow IPC → the condition plugin → `alert::RuleState`), writes each
//! transition to `alert_history` with its reason, and persists the rule's state so a restart
//! resumes where it stopped.
//!
//! It sees storage through its ports and plugins through [`Plugins`]; no HTTP.

mod evaluate;
mod forward;
mod notify;
mod records;
mod scheduler;
mod states;

use std::sync::Arc;

use async_trait::async_trait;
use plugin_runtime::{CompiledPlugin, PluginRuntime};

pub use evaluate::{
    Evaluated, Evaluator, MAX_BACKTEST_EVALUATIONS, last_run_ms, render_annotation,
};
pub use forward::Forwarder;
pub use notify::{Notifier, NotifierHandle, RuleAlerts, alerts_of, channel_owner};
pub use records::{group_spec, group_write, rule_spec, rule_write};
pub use scheduler::{OnEvaluated, Scheduler, SchedulerConfig};

/// Where evaluations get their plugins.
#[async_trait]
pub trait Plugins: Send + Sync + 'static {
    /// The plugin `plugin_id` as `workspace_id` sees it (a built-in, or an enabled upload of
    /// that workspace), compiled; or why it cannot run.
    async fn plugin(
        &self,
        workspace_id: &str,
        plugin_id: &str,
    ) -> Result<Arc<CompiledPlugin>, String>;

    fn runtime(&self) -> Arc<PluginRuntime>;

    /// How a call of `plugin_id` went (`Err`: it trapped, overran or returned bad output), so
    /// an uploaded plugin that keeps failing is disabled, as on the API.
    async fn report(
        &self,
        workspace_id: &str,
        plugin_id: &str,
        result: Result<(), &plugin_runtime::PluginError>,
    );
}
