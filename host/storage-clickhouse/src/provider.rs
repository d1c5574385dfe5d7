//! The DataFusion view of a ClickHouse table.
//!
//! Scans become one `SELECT … FROM db.table WHERE … LIMIT …` over HTTP, answered as Arrow: the
//! projection and every filter we can express are pushed down, each literal as a typed query
//! parameter, never spliced into the SQL. Pushed filters are reported `Inexact`, so DataFusion
//! still applies them itself: a translation can only ever narrow what ClickHouse sends, never
//! decide the answer. The tenant predicates of the scoped views are among the pushed filters,
//! so ClickHouse only reads the caller's granules (every ORDER BY starts with the tenant).

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown, expr::InList,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use futures::{StreamExt, TryStreamExt};
use model::{Rollup, Table, rollup_schema, schema_of};

use crate::arrow_conv::conform;
use crate::client::Client;
use crate::migrate::{Layout, ident};

/// Columns held as ClickHouse `Enum8`: read and compared as their names.
const ENUM_COLUMNS: &[&str] = &[
    "span_kind",
    "status_code",
    "metric_type",
    "temporality",
    "result",
];

#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    Table(Table),
    Rollup(Rollup),
}

#[derive(Debug)]
pub(crate) struct ChTable {
    client: Client,
    layout: Arc<Layout>,
    source: Source,
    schema: SchemaRef,
    timeout: Duration,
}

impl ChTable {
    pub fn new(client: Client, layout: Arc<Layout>, source: Source, timeout: Duration) -> ChTable {
        let schema = match source {
            Source::Table(t) => schema_of(t),
            Source::Rollup(r) => rollup_schema(r),
        };
        ChTable {
            client,
            layout,
            source,
            schema,
            timeout,
        }
    }

    /// The SELECT expression that reads `column` in our Arrow type.
    fn select_expr(&self, column: &str) -> String {
        let c = ident(column);
        match self.source {
            Source::Table(_) if ENUM_COLUMNS.contains(&column) => format!("CAST({c}, 'String')"),
            Source::Table(_) => c,
            Source::Rollup(_) => match column {
                "hour" => format!("toDateTime64({c}, 9, 'UTC')"),
                "date" => format!("toDate32({c})"),
                "sum_value" | "count" => format!("sum({c})"),
                "min_value" => format!("min({c})"),
                "max_value" => format!("max({c})"),
                "avg_value" => "sum(`sum_value`) / sum(`count`)".to_string(),
                c2 if ENUM_COLUMNS.contains(&c2) => format!("CAST({c}, 'String')"),
                _ => c,
            },
        }
    }

    /// Whether a filter on `column` may go into WHERE (for rollups: only key columns, which are
    /// the same before and after grouping).
    fn filterable(&self, column: &str) -> Option<&DataType> {
        let field = self.schema.field_with_name(column).ok()?;
        if let Source::Rollup(r) = self.source
            && column != r.bucket_column()
            && !Rollup::KEY.contains(&column)
        {
            return None;
        }
        Some(field.data_type())
    }

    fn sql(
        &self,
        columns: &[String],
        filters: &[Expr],
        limit: Option<usize>,
    ) -> (String, Vec<(String, String)>) {
        let mut params = Params::default();
        let wheres: Vec<String> = filters
            .iter()
            .filter_map(|f| translate(f, self, &mut params))
            .collect();
        let select = if columns.is_empty() {
            "toUInt8(0) AS _none".to_string()
        } else {
            columns
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{} AS _c{i}", self.select_expr(c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let from = match self.source {
            Source::Table(t) => self.layout.qualified(t.name()),
            Source::Rollup(r) => self.layout.qualified(r.name()),
        };
        let mut sql = format!("SELECT {select} FROM {from}");
        if !wheres.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&wheres.join(" AND "));
        }
        if let Source::Rollup(r) = self.source {
            let mut keys = vec![ident(r.bucket_column())];
            keys.extend(Rollup::KEY.iter().map(|k| ident(k)));
            sql.push_str(" GROUP BY ");
            sql.push_str(&keys.join(", "));
        }
        if let Some(n) = limit {
            sql.push_str(&format!(" LIMIT {n}"));
        }
        (sql, params.list)
    }
}

#[derive(Default)]
struct Params {
    list: Vec<(String, String)>,
}

impl Params {
    fn bind(&mut self, ty: &str, value: String) -> String {
        let name = format!("p{}", self.list.len());
        let placeholder = format!("{{{name}:{ty}}}");
        self.list.push((name, value));
        placeholder
    }
}

/// The column an expression reads, when it is a column or a lossless cast of one.
fn column_of<'a>(e: &'a Expr, t: &ChTable) -> Option<(&'a str, DataType)> {
    match e {
        Expr::Column(c) => Some((c.name.as_str(), t.filterable(&c.name)?.clone())),
        Expr::Cast(c) => {
            let (name, inner) = column_of(&c.expr, t)?;
            let to = c.field.data_type();
            let widening = inner == *to
                || (inner.is_integer()
                    && to.is_integer()
                    && inner.primitive_width() <= to.primitive_width()
                    && (inner.is_signed_integer() == to.is_signed_integer()
                        || (!inner.is_signed_integer()
                            && inner.primitive_width() < to.primitive_width())));
            widening.then_some((name, inner))
        }
        _ => None,
    }
}

/// A literal bound as a parameter that compares correctly with a column of type `col`.
fn literal(v: &ScalarValue, col: &DataType, p: &mut Params) -> Option<String> {
    let nanos = |v: i64, per: i64| v.checked_mul(per);
    Some(match (v, col) {
        (
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            DataType::Utf8,
        ) => p.bind("String", s.clone()),
        (ScalarValue::TimestampNanosecond(Some(t), _), DataType::Timestamp(..)) => {
            format!(
                "fromUnixTimestamp64Nano({}, 'UTC')",
                p.bind("Int64", t.to_string())
            )
        }
        (ScalarValue::TimestampMicrosecond(Some(t), _), DataType::Timestamp(..)) => format!(
            "fromUnixTimestamp64Nano({}, 'UTC')",
            p.bind("Int64", nanos(*t, 1_000)?.to_string())
        ),
        (ScalarValue::TimestampMillisecond(Some(t), _), DataType::Timestamp(..)) => format!(
            "fromUnixTimestamp64Nano({}, 'UTC')",
            p.bind("Int64", nanos(*t, 1_000_000)?.to_string())
        ),
        (ScalarValue::TimestampSecond(Some(t), _), DataType::Timestamp(..)) => format!(
            "fromUnixTimestamp64Nano({}, 'UTC')",
            p.bind("Int64", nanos(*t, 1_000_000_000)?.to_string())
        ),
        (v, c) if c.is_integer() || c.is_floating() => match v {
            ScalarValue::Int8(Some(x)) => p.bind("Int64", x.to_string()),
            ScalarValue::Int16(Some(x)) => p.bind("Int64", x.to_string()),
            ScalarValue::Int32(Some(x)) => p.bind("Int64", x.to_string()),
            ScalarValue::Int64(Some(x)) => p.bind("Int64", x.to_string()),
            ScalarValue::UInt8(Some(x)) => p.bind("UInt64", x.to_string()),
            ScalarValue::UInt16(Some(x)) => p.bind("UInt64", x.to_string()),
            ScalarValue::UInt32(Some(x)) => p.bind("UInt64", x.to_string()),
            ScalarValue::UInt64(Some(x)) => p.bind("UInt64", x.to_string()),
            ScalarValue::Float64(Some(x)) if x.is_finite() && c.is_floating() => {
                p.bind("Float64", format!("{x:?}"))
            }
            _ => return None,
        },
        _ => return None,
    })
}

fn column_sql(name: &str) -> String {
    if ENUM_COLUMNS.contains(&name) {
        format!("CAST({}, 'String')", ident(name))
    } else {
        ident(name)
    }
}

/// ClickHouse SQL for a filter, or `None` when we do not translate it (DataFusion applies it).
fn translate(e: &Expr, t: &ChTable, p: &mut Params) -> Option<String> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And | Operator::Or => {
                let mut scratch = Params {
                    list: p.list.clone(),
                };
                let l = translate(left, t, &mut scratch)?;
                let r = translate(right, t, &mut scratch)?;
                *p = scratch;
                let word = if *op == Operator::And { "AND" } else { "OR" };
                Some(format!("({l} {word} {r})"))
            }
            Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq => {
                let (col, op, lit) = match (left.as_ref(), right.as_ref()) {
                    (c, Expr::Literal(v, _)) => (c, *op, v),
                    (Expr::Literal(v, _), c) => (c, op.swap()?, v),
                    _ => return None,
                };
                let (name, ty) = column_of(col, t)?;
                let value = literal(lit, &ty, p)?;
                Some(format!("{} {op} {value}", column_sql(name)))
            }
            _ => None,
        },
        Expr::Not(inner) => Some(format!("NOT ({})", translate(inner, t, p)?)),
        Expr::InList(InList {
            expr,
            list,
            negated,
        }) if !list.is_empty() && list.len() <= 1000 => {
            let (name, ty) = column_of(expr, t)?;
            let mut scratch = Params {
                list: p.list.clone(),
            };
            let values = list
                .iter()
                .map(|v| match v {
                    Expr::Literal(v, _) => literal(v, &ty, &mut scratch),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            *p = scratch;
            let not = if *negated { "NOT " } else { "" };
            Some(format!(
                "{} {not}IN ({})",
                column_sql(name),
                values.join(", ")
            ))
        }
        Expr::Between(Between {
            expr,
            negated,
            low,
            high,
        }) => {
            let (name, ty) = column_of(expr, t)?;
            let (Expr::Literal(lo, _), Expr::Literal(hi, _)) = (low.as_ref(), high.as_ref()) else {
                return None;
            };
            let mut scratch = Params {
                list: p.list.clone(),
            };
            let lo = literal(lo, &ty, &mut scratch)?;
            let hi = literal(hi, &ty, &mut scratch)?;
            *p = scratch;
            let not = if *negated { "NOT " } else { "" };
            Some(format!("{} {not}BETWEEN {lo} AND {hi}", column_sql(name)))
        }
        _ => None,
    }
}

#[async_trait]
impl TableProvider for ChTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if translate(f, self, &mut Params::default()).is_some() {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let indices: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let projected = Arc::new(self.schema.project(&indices)?);
        let columns: Vec<String> = indices
            .iter()
            .map(|i| self.schema.field(*i).name().clone())
            .collect();
        let (sql, params) = self.sql(&columns, filters, limit);
        tracing::debug!(%sql, "clickhouse scan");
        let part = Arc::new(Scan {
            client: self.client.clone(),
            sql,
            params,
            schema: projected.clone(),
            timeout: self.timeout,
        });
        Ok(Arc::new(StreamingTableExec::try_new(
            projected,
            vec![part],
            None,
            [],
            false,
            limit,
        )?))
    }
}

#[derive(Debug)]
struct Scan {
    client: Client,
    sql: String,
    params: Vec<(String, String)>,
    schema: SchemaRef,
    timeout: Duration,
}

impl PartitionStream for Scan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let client = self.client.clone();
        let sql = self.sql.clone();
        let params = self.params.clone();
        let schema = Arc::clone(&self.schema);
        let timeout = self.timeout;
        let stream = futures::stream::once(async move {
            let settings = [("max_execution_time", timeout.as_secs().max(1).to_string())];
            let batches = client
                .select_arrow(&sql, &params, &settings, timeout)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let schema = Arc::clone(&schema);
            Ok::<_, DataFusionError>(batches.map(move |b| {
                let b = b.map_err(|e| DataFusionError::External(Box::new(e)))?;
                to_schema(&b, &schema).map_err(|e| DataFusionError::ArrowError(Box::new(e), None))
            }))
        })
        .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream,
        ))
    }
}

fn to_schema(b: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    if schema.fields().is_empty() {
        return RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(b.num_rows())),
        );
    }
    conform(b, schema)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};

    fn table(source: Source) -> ChTable {
        let client = Client::new(&crate::client::ClientConfig {
            url: "http://127.0.0.1:1".into(),
            user: None,
            password: None,
            connect_timeout: Duration::from_secs(1),
        })
        .expect("client");
        ChTable::new(
            client,
            Arc::new(Layout::single("tf")),
            source,
            Duration::from_secs(1),
        )
    }

    #[test]
    fn filters_become_typed_parameters_and_never_sql_text() {
        let t = table(Source::Table(Table::Logs));
        let evil = "x' OR 1=1 --";
        let filters = vec![
            col("tenant_id").eq(lit(evil)),
            col("severity_number").gt_eq(lit(9i64)),
            col("timestamp").lt(lit(ScalarValue::TimestampNanosecond(
                Some(5),
                Some("UTC".into()),
            ))),
            col("body").like(lit("%x%")),
        ];
        let (sql, params) = t.sql(&["body".to_string()], &filters, Some(10));
        assert!(!sql.contains(evil), "{sql}");
        assert_eq!(
            sql,
            "SELECT `body` AS _c0 FROM `tf`.`logs_v3` WHERE `tenant_id` = {p0:String} AND \
             `severity_number` >= {p1:Int64} AND `timestamp` < fromUnixTimestamp64Nano({p2:Int64}, 'UTC') LIMIT 10"
        );
        assert_eq!(
            params,
            vec![
                ("p0".to_string(), evil.to_string()),
                ("p1".to_string(), "9".to_string()),
                ("p2".to_string(), "5".to_string())
            ]
        );
        // LIKE is left to DataFusion.
        let pushed = t
            .supports_filters_pushdown(&filters.iter().collect::<Vec<_>>())
            .expect("pushdown");
        assert_eq!(pushed[3], TableProviderFilterPushDown::Unsupported);
        assert_eq!(pushed[0], TableProviderFilterPushDown::Inexact);
    }

    #[test]
    fn enums_compare_as_names_and_rollups_group_by_their_key() {
        let t = table(Source::Table(Table::Traces));
        let (sql, _) = t.sql(
            &["span_kind".to_string()],
            &[col("span_kind").in_list(vec![lit("server"), lit("client")], false)],
            None,
        );
        assert!(sql.contains("CAST(`span_kind`, 'String') AS _c0"), "{sql}");
        assert!(
            sql.contains("CAST(`span_kind`, 'String') IN ({p0:String}, {p1:String})"),
            "{sql}"
        );

        let r = table(Source::Rollup(Rollup::Hourly));
        let (sql, _) = r.sql(
            &["hour".to_string(), "avg_value".to_string()],
            &[
                col("metric_name").eq(lit("cpu")),
                col("sum_value").gt(lit(1.0)),
            ],
            None,
        );
        assert!(
            sql.contains("WHERE `metric_name` = {p0:String} GROUP BY `hour`"),
            "{sql}"
        );
        assert!(
            !sql.contains("sum_value` >"),
            "aggregates are filtered after grouping: {sql}"
        );
    }
}
