//! Builder queries in ClickHouse's SQL, for stores that run it ([`crate::NativeSql`]): the
//! aggregation happens where the rows are, and only the buckets come back.
//!
//! The statement always filters the caller's workspace and tenant; every caller value (and the
//! scope, the range, the step) is a named, typed parameter (`{p0:String}`). What cannot be said
//! here with the same answer as DataFusion's (counters, histograms, rollups) is left to
//! DataFusion over the store's providers.
//!
//! Same answers: `percentile_cont` (linear between the closest ranks) is ClickHouse's
//! `quantileExactInclusive`; a bucket is `date_bin` from the Unix epoch, the integer division
//! of the nanosecond timestamp; a missing map key is `''` in both.

use model::{Scope, Table};

use crate::NativeSql;
use crate::QueryError;
use crate::builder::{
    Aggregation, BuilderQuery, Filter, FilterOp, FilterValue, KeyRef, Request, Signal,
    check_string, invalid, one_value, resolve_key, value_column,
};

/// A compiled statement and its parameters.
pub(crate) struct NativeQuery {
    pub sql: String,
    pub params: Vec<(String, String)>,
}

struct Params(Vec<(String, String)>);

impl Params {
    fn bind(&mut self, ty: &str, value: impl ToString) -> String {
        let name = format!("p{}", self.0.len());
        let placeholder = format!("{{{name}:{ty}}}");
        self.0.push((name, value.to_string()));
        placeholder
    }
}

/// A key in ClickHouse's SQL: enumerations and numbers as text, a missing map key is `''`.
fn key_expr(signal: Signal, key: &str, p: &mut Params) -> Result<String, QueryError> {
    Ok(match resolve_key(signal, key)? {
        KeyRef::Column { name, text: true } => name.to_string(),
        KeyRef::Column { name, text: false } => format!("toString({name})"),
        KeyRef::Attribute { map, name } => format!("{map}[{}]", p.bind("String", name)),
    })
}

fn filter_sql(signal: Signal, f: &Filter, i: usize, p: &mut Params) -> Result<String, QueryError> {
    let e = key_expr(signal, &f.key, p)?;
    Ok(match f.op {
        FilterOp::Eq | FilterOp::Ne => {
            let v = p.bind("String", one_value(f, i)?);
            let op = if f.op == FilterOp::Eq { "=" } else { "!=" };
            format!("{e} {op} {v}")
        }
        FilterOp::Matches | FilterOp::NotMatches => {
            let v = one_value(f, i)?;
            let anchored = format!("^(?:{v})$");
            regex::Regex::new(&anchored).map_err(|err| {
                invalid(format!(
                    "filters[{i}] ({}): not a regular expression: {err}",
                    f.key
                ))
            })?;
            let not = if f.op == FilterOp::Matches {
                ""
            } else {
                "NOT "
            };
            format!("{not}match({e}, {})", p.bind("String", anchored))
        }
        FilterOp::Exists => format!("{e} != ''"),
        FilterOp::NotExists => format!("{e} = ''"),
        FilterOp::In | FilterOp::NotIn => {
            let values = match &f.value {
                Some(FilterValue::Many(v)) if !v.is_empty() && v.len() <= 1000 => v.clone(),
                Some(FilterValue::One(v)) => vec![v.clone()],
                _ => {
                    return Err(invalid(format!(
                        "filters[{i}] ({}): in / not_in take a list of 1 to 1000 strings",
                        f.key
                    )));
                }
            };
            let mut ps = Vec::with_capacity(values.len());
            for v in &values {
                check_string(v, "a filter value")?;
                ps.push(p.bind("String", v));
            }
            let not = if f.op == FilterOp::In { "" } else { "NOT " };
            format!("{e} {not}IN ({})", ps.join(", "))
        }
    })
}

/// The builder query in ClickHouse's SQL, or `None` when DataFusion must answer it (counters,
/// histograms, a rollup's range).
///
/// # Errors
/// [`QueryError::Invalid`] naming what is wrong with the query.
pub(crate) fn compile(
    qs: &[&BuilderQuery],
    r: &Request,
    step_ms: i64,
    scope: &Scope,
    native: &dyn NativeSql,
    rollup: bool,
) -> Result<Option<NativeQuery>, QueryError> {
    let Some(&q) = qs.first() else {
        return Ok(None);
    };
    if rollup
        || qs.iter().any(|q| {
            matches!(
                q.aggregation,
                Aggregation::Rate | Aggregation::Increase | Aggregation::HistogramQuantile
            )
        })
    {
        return Ok(None);
    }
    let mut p = Params(Vec::new());
    let table = match q.signal {
        Signal::Metrics => Table::Metrics,
        Signal::Logs => Table::Logs,
        Signal::Traces => Table::Traces,
    };
    let mut wheres = vec![
        format!("workspace_id = {}", p.bind("String", &scope.workspace_id)),
        format!("tenant_id = {}", p.bind("String", &scope.tenant_id)),
        format!(
            "timestamp >= fromUnixTimestamp64Nano({}, 'UTC')",
            p.bind("Int64", r.from_ns)
        ),
        format!(
            "timestamp < fromUnixTimestamp64Nano({}, 'UTC')",
            p.bind("Int64", r.to_ns)
        ),
    ];
    if let Some(metric) = q.metric.as_deref() {
        wheres.push(format!("metric_name = {}", p.bind("String", metric)));
    }
    for (i, f) in q.filters.iter().enumerate() {
        wheres.push(filter_sql(q.signal, f, i, &mut p)?);
    }
    let mut select = Vec::new();
    if !r.instant {
        let step_ns = p.bind("Int64", step_ms * 1_000_000);
        select.push(format!(
            "fromUnixTimestamp64Nano(intDiv(toUnixTimestamp64Nano(timestamp), {step_ns}) * {step_ns}, 'UTC') AS time"
        ));
    }
    for (i, k) in q.group_by.iter().enumerate() {
        select.push(format!("{} AS g{i}", key_expr(q.signal, k, &mut p)?));
    }
    let groups = select.len();
    let v = match (q.signal, q.field.as_deref()) {
        (Signal::Metrics, None | Some("value")) => "value".to_string(),
        (Signal::Traces, None | Some("duration_ms" | "duration")) => {
            "duration_nano / 1000000.0".to_string()
        }
        (Signal::Logs, None) if q.aggregation != Aggregation::Count => {
            return Err(invalid(format!(
                "query {}: logs have no value to aggregate; count them or give a numeric field",
                q.name
            )));
        }
        (_, Some(key)) => format!(
            "toFloat64OrNull(nullIf({}, ''))",
            key_expr(q.signal, key, &mut p)?
        ),
        (_, None) => "1.0".to_string(),
    };
    // Queries sharing the statement share its rows and groups (`builder::statements`): a
    // value column each.
    for (k, q) in qs.iter().enumerate() {
        let agg = match q.aggregation {
            Aggregation::Count if q.field.is_none() => "count()".to_string(),
            Aggregation::Count => format!("count({v})"),
            Aggregation::Sum => format!("sum({v})"),
            Aggregation::Avg => format!("avg({v})"),
            Aggregation::Min => format!("min({v})"),
            Aggregation::Max => format!("max({v})"),
            a => match a.percentile() {
                Some(pct) => format!("quantileExactInclusive({pct:?})({v})"),
                None => return Ok(None),
            },
        };
        select.push(format!("toFloat64({agg}) AS {}", value_column(k)));
    }
    let mut sql = format!(
        "SELECT {} FROM {} WHERE {}",
        select.join(", "),
        native.table_name(table),
        wheres.join(" AND ")
    );
    if groups > 0 {
        let positions: Vec<String> = (1..=groups).map(|i| i.to_string()).collect();
        sql.push_str(&format!(" GROUP BY {}", positions.join(", ")));
    }
    // Series together, each in time order (as the DataFusion form orders them).
    let t = usize::from(!r.instant);
    let mut order: Vec<String> = (0..q.group_by.len())
        .map(|i| (i + 1 + t).to_string())
        .collect();
    if !r.instant {
        order.push("1".into());
    }
    if !order.is_empty() {
        sql.push_str(&format!(" ORDER BY {}", order.join(", ")));
    }
    Ok(Some(NativeQuery { sql, params: p.0 }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::Order;
    use proptest::prelude::*;

    struct Fake;

    impl NativeSql for Fake {
        fn table_name(&self, table: Table) -> String {
            format!("db.{}", table.name())
        }

        fn run<'a>(
            &'a self,
            _: String,
            _: Vec<(String, String)>,
            _: usize,
        ) -> std::pin::Pin<Box<dyn Future<Output = Result<crate::SqlOutput, QueryError>> + Send + 'a>>
        {
            Box::pin(async { Err(QueryError::Internal("not run here".into())) })
        }
    }

    proptest! {
        #[test]
        fn caller_strings_are_parameters_and_the_tenant_is_always_filtered(
            metric in "Ω[a-z'\"`;\\\\{}() ]{0,12}",
            keys in proptest::collection::vec("(resource\\.|attributes\\.)?Ω[a-z'\"{}:; ]{0,8}", 0..4),
            values in proptest::collection::vec("Ω[a-zA-Z0-9'\"`; %_*(){}:\\\\-]{0,12}", 1..4),
            signal in proptest::sample::select(vec![Signal::Metrics, Signal::Logs, Signal::Traces]),
            op in proptest::sample::select(vec![FilterOp::Eq, FilterOp::Ne, FilterOp::In, FilterOp::NotIn, FilterOp::Exists, FilterOp::NotExists]),
            aggregation in proptest::sample::select(vec![Aggregation::Count, Aggregation::Avg, Aggregation::Max, Aggregation::P99]),
            instant in any::<bool>(),
        ) {
            let aggregation = if signal == Signal::Logs { Aggregation::Count } else { aggregation };
            let value = match op {
                FilterOp::In | FilterOp::NotIn => Some(FilterValue::Many(values.clone())),
                _ => Some(FilterValue::One(values[0].clone())),
            };
            let q = BuilderQuery {
                name: "A".into(),
                signal,
                metric: (signal == Signal::Metrics).then(|| metric.clone()),
                aggregation,
                field: None,
                quantile: None,
                filters: keys.iter().map(|k| Filter { key: k.clone(), op, value: value.clone() }).collect(),
                group_by: keys.clone(),
                order: Order::Labels,
                limit: None,
                hidden: false,
            };
            let r = Request {
                from_ns: 0,
                to_ns: 3_600_000_000_000,
                step_ms: None,
                max_points: 100,
                instant,
                queries: vec![q.clone()],
                formulas: vec![],
            };
            let scope = Scope {
                organization_id: "o".into(),
                workspace_id: "Ωws'".into(),
                tenant_id: "Ωt\"".into(),
            };
            let c = compile(&[&q], &r, 60_000, &scope, &Fake, false)
                .map_err(|e| TestCaseError::fail(e.to_string()))?
                .ok_or_else(|| TestCaseError::fail("not compiled"))?;
            prop_assert!(!c.sql.contains('Ω'), "a caller's string in the SQL text: {}", c.sql);
            prop_assert!(c.sql.contains("workspace_id = {p0:String} AND tenant_id = {p1:String}"), "{}", c.sql);
            prop_assert_eq!(&c.params[0].1, &scope.workspace_id);
            prop_assert_eq!(&c.params[1].1, &scope.tenant_id);
        }
    }
}
