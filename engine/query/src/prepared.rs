//! A query planned and optimized once, then run again and again with new parameter values:
//! an alert rule's query, whose `$__from`/`$__to` window moves with each evaluation. Parsing,
//! the scoped session, planning and the logical optimizer are paid once; each run fills in
//! the values, plans it physically (so it reads the files and memory the store holds then)
//! and runs it.
//!
//! Only a plan whose parameters all get a type from their use (`timestamp >= $__from`) and
//! that calls no function whose answer changes from run to run (`now()`, `random()`) is kept;
//! for anything else [`Prepared::new`] says `None` and the caller renders values into the text.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::{SessionState, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, Volatility};
use datafusion::physical_plan::collect;
use datafusion::prelude::{SQLOptions, SessionConfig};
use model::Scope;

use crate::{QueryError, QueryLimits, SqlOutput, TelemetryTables, ensure_single_select};

/// A session with every function and rule and no tables, over the shared caches: prepared
/// plans carry their own table sources, so a run plans against this and executes with its own
/// runtime (its memory limit). One partition: prepared queries are alert rules' short windows,
/// and the scheduler already runs several evaluations at once; splitting each small scan only
/// adds repartitioning and task hops.
///
/// Its physical optimizer runs only the rules a plan needs to run right (output requirements,
/// join modes, distribution and sorting, cooperative yielding, the sanity check), the one that
/// hands filters to the Parquet scans (their row group and page pruning: a listing scan does
/// not take the filters itself), and the one that turns a partial + final aggregation into a
/// single one. The others find little to do in a one-partition plan whose projections and
/// limits the logical optimizer already pushed into the scans (statistics shortcuts, dynamic
/// filters, top-k, pushing projections and limits again), and together cost a tenth of an
/// alert evaluation.
static BARE: LazyLock<SessionState> = LazyLock::new(|| {
    use datafusion::physical_optimizer::PhysicalOptimizerRule;
    use datafusion::physical_optimizer::combine_partial_final_agg::CombinePartialFinalAggregate;
    use datafusion::physical_optimizer::ensure_coop::EnsureCooperative;
    use datafusion::physical_optimizer::ensure_requirements::EnsureRequirements;
    use datafusion::physical_optimizer::filter_pushdown::FilterPushdown;
    use datafusion::physical_optimizer::join_selection::JoinSelection;
    use datafusion::physical_optimizer::output_requirements::OutputRequirements;
    use datafusion::physical_optimizer::sanity_checker::SanityCheckPlan;
    let rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> = vec![
        Arc::new(OutputRequirements::new_add_mode()),
        Arc::new(JoinSelection::new()),
        Arc::new(FilterPushdown::new()),
        Arc::new(EnsureRequirements::new()),
        Arc::new(CombinePartialFinalAggregate::new()),
        Arc::new(OutputRequirements::new_remove_mode()),
        Arc::new(EnsureCooperative::new()),
        Arc::new(SanityCheckPlan::new()),
        Arc::new(crate::string_eq::StringEqRule),
    ];
    let builder = SessionStateBuilder::new()
        .with_config(
            SessionConfig::new()
                .with_information_schema(false)
                .with_target_partitions(1),
        )
        .with_default_features()
        .with_physical_optimizer_rules(rules);
    match crate::shared_runtime() {
        Some(rt) => builder.with_runtime_env(rt),
        None => builder,
    }
    .build()
});

/// A parameter's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Param {
    /// An instant, in milliseconds since the epoch (UTC).
    TimestampMs(i64),
}

impl Param {
    fn scalar(self) -> ScalarValue {
        match self {
            Param::TimestampMs(ms) => {
                ScalarValue::TimestampMillisecond(Some(ms), Some("UTC".into()))
            }
        }
    }
}

/// A planned, optimized query with named parameters still open.
#[derive(Debug)]
pub struct Prepared {
    plan: LogicalPlan,
    /// Each parameter (without its `$`) and the type its use gives it.
    params: HashMap<String, DataType>,
    max_rows: usize,
}

impl Prepared {
    /// Plans `sql` in `scope`, leaving its `$name` placeholders open; `params` are the names
    /// it must have (without `$`). `None` when it cannot be kept (see the module docs).
    ///
    /// # Errors
    /// As [`crate::run_scoped_sql`] for a query that does not plan.
    pub async fn new(
        tables: &dyn TelemetryTables,
        scope: &Scope,
        sql: &str,
        params: &[&str],
        limits: &QueryLimits,
    ) -> Result<Option<Prepared>, QueryError> {
        ensure_single_select(sql)?;
        let ctx = crate::scoped_context(tables, scope, limits)?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let (state, plan) = ctx.sql_with_options(sql, options).await?.into_parts();
        let types = plan.get_parameter_types()?;
        let mut known = HashMap::with_capacity(types.len());
        for (id, t) in types {
            let (Some(name), Some(t)) = (id.strip_prefix('$'), t) else {
                return Ok(None);
            };
            if !params.contains(&name) {
                return Ok(None);
            }
            known.insert(name.to_string(), t);
        }
        if params.iter().any(|p| !known.contains_key(*p)) || changes_between_runs(&plan)? {
            return Ok(None);
        }
        let limited = LogicalPlanBuilder::from(plan)
            .limit(0, Some(limits.max_rows + 1))?
            .build()?;
        let plan = state.optimize(&limited)?;
        Ok(Some(Prepared {
            plan,
            params: known,
            max_rows: limits.max_rows,
        }))
    }

    /// Runs the plan with `values` (name without `$`, value; cast to each parameter's type).
    ///
    /// # Errors
    /// A missing value or one that does not cast, or the run failing.
    pub async fn run(
        &self,
        values: &[(&str, Param)],
        limits: &QueryLimits,
    ) -> Result<SqlOutput, QueryError> {
        let mut map = HashMap::with_capacity(self.params.len());
        for (name, t) in &self.params {
            let Some((_, v)) = values.iter().find(|(n, _)| n == name) else {
                return Err(QueryError::Invalid(format!("no value for ${name}")));
            };
            map.insert(name.clone(), v.scalar().cast_to(t)?.into());
        }
        let plan = self.plan.clone().with_param_values(ParamValues::Map(map))?;
        let schema = Arc::new(plan.schema().as_arrow().clone());
        let state: &SessionState = &BARE;
        let physical = state
            .query_planner()
            .create_physical_plan(&plan, state)
            .await?;
        let task = TaskContext::from(state).with_runtime(crate::query_runtime(limits)?);
        let batches = collect(physical, Arc::new(task)).await?;
        Ok(crate::cut_rows(schema, batches, self.max_rows))
    }
}

/// Whether the plan calls a function whose answer may change between runs (`now()`,
/// `random()`): the optimizer would fold those into the kept plan.
fn changes_between_runs(plan: &LogicalPlan) -> Result<bool, QueryError> {
    let mut found = false;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && f.func.signature().volatility != Volatility::Immutable
                {
                    found = true;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(found)
}
