//! Reading the audit log: admins only (the host checks), always within one organization.

use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast, col, lit};
use datafusion::prelude::{SessionConfig, SessionContext};
use model::Table;

use crate::{QueryError, QueryLimits, SqlOutput, TelemetryTables};

/// What to read from `audit_logs`: one organization, optionally narrowed.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub organization_id: String,
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
    pub action: Option<String>,
    pub result: Option<String>,
    /// Inclusive lower bound, unix nanoseconds.
    pub from_ns: Option<i64>,
    /// Exclusive upper bound, unix nanoseconds.
    pub to_ns: Option<i64>,
    pub limit: usize,
}

fn at(ns: i64) -> Expr {
    cast(
        lit(ns),
        DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
    )
}

/// The newest matching audit events first.
///
/// # Errors
/// When the store cannot be read.
pub async fn audit_events(
    tables: &dyn TelemetryTables,
    filter: &AuditFilter,
    limits: &QueryLimits,
) -> Result<SqlOutput, QueryError> {
    let ctx = SessionContext::new_with_config(SessionConfig::new());
    let source = provider_as_source(tables.table_provider(Table::AuditLogs));
    let mut pred = col("organization_id").eq(lit(filter.organization_id.clone()));
    for (column, value) in [
        ("tenant_id", &filter.tenant_id),
        ("user_id", &filter.user_id),
        ("action", &filter.action),
        ("result", &filter.result),
    ] {
        if let Some(v) = value {
            pred = pred.and(col(column).eq(lit(v.clone())));
        }
    }
    if let Some(from) = filter.from_ns {
        pred = pred.and(col("timestamp").gt_eq(at(from)));
    }
    if let Some(to) = filter.to_ns {
        pred = pred.and(col("timestamp").lt(at(to)));
    }
    let limit = filter.limit.min(limits.max_rows);
    let plan = LogicalPlanBuilder::scan(Table::AuditLogs.name(), source, None)?
        .filter(pred)?
        .sort(vec![col("timestamp").sort(false, false)])?
        .limit(0, Some(limit))?
        .build()?;
    let df = ctx.execute_logical_plan(plan).await?;
    let schema: SchemaRef = std::sync::Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    Ok(SqlOutput {
        schema,
        batches,
        truncated: false,
    })
}

/// One rule's history (its state changes), newest first, in the caller's scope.
///
/// # Errors
/// When the store cannot be read.
pub async fn alert_history(
    tables: &dyn TelemetryTables,
    scope: &model::Scope,
    alert_rule_id: Option<&str>,
    limit: usize,
    limits: &QueryLimits,
) -> Result<SqlOutput, QueryError> {
    let ctx = SessionContext::new_with_config(SessionConfig::new());
    let source = provider_as_source(tables.table_provider(Table::AlertHistory));
    let mut pred = col("workspace_id")
        .eq(lit(scope.workspace_id.clone()))
        .and(col("tenant_id").eq(lit(scope.tenant_id.clone())));
    if let Some(id) = alert_rule_id {
        pred = pred.and(col("alert_rule_id").eq(lit(id.to_string())));
    }
    let plan = LogicalPlanBuilder::scan(Table::AlertHistory.name(), source, None)?
        .filter(pred)?
        .sort(vec![col("timestamp").sort(false, false)])?
        .limit(0, Some(limit.min(limits.max_rows)))?
        .build()?;
    let df = ctx.execute_logical_plan(plan).await?;
    let schema: SchemaRef = std::sync::Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    Ok(SqlOutput {
        schema,
        batches,
        truncated: false,
    })
}
