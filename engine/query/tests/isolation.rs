//! Properties of the two query paths, over generated input:
//! - SQL: random query trees (nested subqueries, CTEs, unions, joins, `IN` subqueries, and
//!   predicates that ask for another tenant outright) never return a row of another tenant,
//!   including the same tenant id in another workspace;
//! - the builder: whatever strings a caller puts in a query (metric, keys, values, regexes),
//!   none reaches the SQL text; each is a bound parameter.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow::json::ReaderBuilder;
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use model::{Scope, Table, schema_of};
use proptest::prelude::*;
use query::builder::{
    Aggregation, BuilderQuery, Filter, FilterOp, FilterValue, Order, Request, Signal, compile,
};
use query::{QueryLimits, TelemetryTables, run_scoped_sql};
use serde_json::{Map, Value, json};

/// The owners of rows: ours, another tenant of our workspace, our tenant id in another
/// workspace.
const OWNERS: [(&str, &str); 3] = [("ws1", "t1"), ("ws1", "t2"), ("ws2", "t1")];

struct Mem(HashMap<Table, Arc<dyn TableProvider>>);

impl TelemetryTables for Mem {
    fn table_provider(&self, table: Table) -> Arc<dyn TableProvider> {
        Arc::clone(&self.0[&table])
    }
}

/// A JSON value of the right shape for a column (Arrow's JSON reader builds the batch).
fn value_for(name: &str, ty: &DataType, owner: (&str, &str), i: usize) -> Value {
    match (name, ty) {
        ("workspace_id", _) => json!(owner.0),
        ("tenant_id", _) => json!(owner.1),
        ("organization_id", _) => json!(format!("org-{}", owner.0)),
        ("service_name", _) => json!(format!("svc-{}-{}", owner.0, owner.1)),
        ("metric_name", _) => json!("m"),
        (_, DataType::Timestamp(..)) => json!(1_700_000_000_000_000_000_i64 + i as i64),
        (_, DataType::Utf8) => json!(format!("{name}-{}-{}-{i}", owner.0, owner.1)),
        (_, DataType::Map(..)) => json!({"k": format!("{}-{}", owner.0, owner.1)}),
        (_, DataType::List(_)) => json!([]),
        (_, DataType::Float64) => json!(i as f64),
        (_, _) => json!(i),
    }
}

fn tables() -> Mem {
    let mut map: HashMap<Table, Arc<dyn TableProvider>> = HashMap::new();
    for table in Table::TELEMETRY {
        let schema = schema_of(table);
        let mut rows = Vec::new();
        for owner in OWNERS {
            for i in 0..3 {
                let row: Map<String, Value> = schema
                    .fields()
                    .iter()
                    .map(|f| {
                        (
                            f.name().clone(),
                            value_for(f.name(), f.data_type(), owner, i),
                        )
                    })
                    .collect();
                rows.push(Value::Object(row));
            }
        }
        let mut decoder = ReaderBuilder::new(Arc::clone(&schema))
            .build_decoder()
            .expect("decoder");
        decoder.serialize(&rows).expect("rows fit the schema");
        let batch: RecordBatch = decoder.flush().expect("flush").expect("a batch");
        let provider = MemTable::try_new(schema, vec![vec![batch]]).expect("mem table");
        map.insert(table, Arc::new(provider));
    }
    Mem(map)
}

fn scope() -> Scope {
    Scope {
        organization_id: "org-ws1".into(),
        workspace_id: "ws1".into(),
        tenant_id: "t1".into(),
    }
}

/// A query yielding one column `o` (`workspace_id/tenant_id` of the rows it read).
#[derive(Debug, Clone)]
enum Tree {
    Table(&'static str, bool),
    Sub(Box<Tree>),
    Cte(Box<Tree>),
    Union(Box<Tree>, Box<Tree>),
    Join(Box<Tree>, Box<Tree>),
    InSub(Box<Tree>, &'static str),
    Exists(Box<Tree>, &'static str),
}

const TABLES: [&str; 7] = [
    "traces_v3",
    "logs_v3",
    "metrics_v3",
    "metric_histograms",
    "exemplars_v3",
    "spans_v3",
    "logs_v3_by_trace",
];

impl Tree {
    fn sql(&self, n: &mut usize) -> String {
        *n += 1;
        let id = *n;
        match self {
            // `asks` adds a predicate that names another tenant outright.
            Tree::Table(t, asks) => {
                let pred = if *asks {
                    " WHERE tenant_id = 't2' OR workspace_id = 'ws2' OR 1 = 1"
                } else {
                    ""
                };
                format!("SELECT workspace_id || '/' || tenant_id AS o FROM {t}{pred}")
            }
            Tree::Sub(q) => format!("SELECT o FROM ({}) AS s{id}", q.sql(n)),
            Tree::Cte(q) => format!("WITH c{id} AS ({}) SELECT o FROM c{id}", q.sql(n)),
            Tree::Union(a, b) => format!("({}) UNION ALL ({})", a.sql(n), b.sql(n)),
            Tree::Join(a, b) => format!(
                "SELECT l{id}.o FROM ({}) AS l{id} JOIN ({}) AS r{id} ON l{id}.o = r{id}.o OR l{id}.o <> r{id}.o",
                a.sql(n),
                b.sql(n)
            ),
            Tree::InSub(q, t) => format!(
                "SELECT o FROM ({}) AS s{id} WHERE o IN (SELECT workspace_id || '/' || tenant_id FROM {t})",
                q.sql(n)
            ),
            Tree::Exists(q, t) => format!(
                "SELECT o FROM ({}) AS s{id} WHERE EXISTS (SELECT 1 FROM {t} WHERE tenant_id <> 't1')",
                q.sql(n)
            ),
        }
    }
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = (proptest::sample::select(TABLES.to_vec()), any::<bool>())
        .prop_map(|(t, asks)| Tree::Table(t, asks));
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|q| Tree::Sub(Box::new(q))),
            inner.clone().prop_map(|q| Tree::Cte(Box::new(q))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Tree::Union(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Tree::Join(Box::new(a), Box::new(b))),
            (inner.clone(), proptest::sample::select(TABLES.to_vec()))
                .prop_map(|(q, t)| Tree::InSub(Box::new(q), t)),
            (inner, proptest::sample::select(TABLES.to_vec()))
                .prop_map(|(q, t)| Tree::Exists(Box::new(q), t)),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn sql_never_returns_another_tenants_rows(t in tree()) {
        let sql = t.sql(&mut 0);
        let tables = tables();
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let out = rt
            .block_on(run_scoped_sql(&tables, &scope(), &sql, &QueryLimits::default()))
            .map_err(|e| TestCaseError::fail(format!("{sql}: {e}")))?;
        let mut seen = 0;
        for b in &out.batches {
            let col = b.column(0).as_any().downcast_ref::<arrow::array::StringArray>()
                .ok_or_else(|| TestCaseError::fail("not a string column"))?;
            for v in col.iter() {
                prop_assert_eq!(v, Some("ws1/t1"), "{}", sql);
                seen += 1;
            }
        }
        // Joins of non-empty sides and unions keep rows: the caller's own rows come back.
        prop_assert!(seen > 0 || sql.contains("EXISTS"), "{}", sql);
    }

    #[test]
    fn builder_strings_never_reach_the_sql_text(
        metric in "Ω[a-z'\";\\-() ]{0,12}",
        keys in proptest::collection::vec("(resource\\.|attributes\\.)?Ω[a-z'\"; ]{0,8}", 0..4),
        values in proptest::collection::vec("Ω[a-zA-Z0-9'\"; %_*()\\-]{0,12}", 1..4),
        signal in proptest::sample::select(vec![Signal::Metrics, Signal::Logs, Signal::Traces]),
        op in proptest::sample::select(vec![FilterOp::Eq, FilterOp::Ne, FilterOp::In, FilterOp::NotIn, FilterOp::Exists, FilterOp::NotExists, FilterOp::Matches]),
        aggregation in proptest::sample::select(vec![Aggregation::Count, Aggregation::Avg, Aggregation::P99, Aggregation::Rate, Aggregation::HistogramQuantile]),
        instant in any::<bool>(),
    ) {
        let aggregation = if signal == Signal::Metrics { aggregation } else { Aggregation::Count };
        let value = match op {
            FilterOp::In | FilterOp::NotIn => Some(FilterValue::Many(values.clone())),
            FilterOp::Matches => Some(FilterValue::One(regex_escape(&values[0]))),
            _ => Some(FilterValue::One(values[0].clone())),
        };
        let filters: Vec<Filter> = keys
            .iter()
            .map(|k| Filter { key: k.clone(), op, value: value.clone() })
            .collect();
        let q = BuilderQuery {
            name: "A".into(),
            signal,
            metric: (signal == Signal::Metrics).then(|| metric.clone()),
            aggregation,
            field: (signal == Signal::Logs && !keys.is_empty()).then(|| keys[0].clone()),
            quantile: Some(0.9),
            filters,
            group_by: keys.clone(),
            order: Order::ValueDesc,
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
        let c = compile(&q, &r, 60_000).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(!c.sql.contains('Ω'), "a caller's string in the SQL text: {}", c.sql);
        let bound: Vec<String> = c.params.iter().map(ToString::to_string).collect();
        if signal == Signal::Metrics {
            prop_assert!(bound.contains(&metric), "{:?}", bound);
        }
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == 'Ω' || c == ' ' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

#[test]
fn the_caller_sees_only_its_own_rows_in_each_table() {
    let tables = tables();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for t in TABLES {
        let out = rt
            .block_on(run_scoped_sql(
                &tables,
                &scope(),
                &format!("SELECT count(*) AS n FROM {t}"),
                &QueryLimits::default(),
            ))
            .expect("query");
        let n = out.batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .expect("count")
            .value(0);
        assert_eq!(n, 3, "{t}");
    }
}
