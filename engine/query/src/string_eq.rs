//! `column = 'text'` (and `!=`) over `Utf8` columns, without a byte comparison per row where
//! a batch allows it.
//!
//! Every scoped query filters `workspace_id` and `tenant_id` by equality, and most filter a
//! metric or service name too. Arrow's kernel compares each row's bytes with a call of its
//! own. A write comes from one API key, so each of the store's batches holds one scope (files
//! split them by scope), and often one metric: [`StringEq`] first checks that every row has
//! the needle's length (the offsets alone) and that the batch's bytes are the needle repeated
//! (a few long comparisons), and only compares row by row when that fails. The answer, nulls
//! included, is the kernel's.
//!
//! [`StringEqRule`] is the last physical optimizer rule of our sessions: it swaps such
//! comparisons inside `FilterExec` predicates once the plan is final, so no other rule sees
//! them (the rows and their order are unchanged, only the way the predicate is computed).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, GenericStringArray, OffsetSizeTrait, RecordBatch,
};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};

/// How many bytes of the repeated needle are kept to compare a batch's bytes against: built at
/// every physical planning (each alert evaluation plans), so small; a batch is compared in
/// pieces of this size.
const REPEATED_BYTES: usize = 4 * 1024;

/// `column = needle` (or `!=`, `negated`) over a string column; any other input type goes to
/// the expression it replaced.
#[derive(Debug)]
pub(crate) struct StringEq {
    column: Arc<dyn PhysicalExpr>,
    needle: Vec<u8>,
    negated: bool,
    /// Whether the column is the comparison's left side.
    column_left: bool,
    /// The needle repeated, a whole number of times (empty for an empty needle).
    repeated: Vec<u8>,
    original: Arc<dyn PhysicalExpr>,
}

impl PartialEq for StringEq {
    fn eq(&self, other: &Self) -> bool {
        self.original.as_ref() == other.original.as_ref()
    }
}

impl Eq for StringEq {}

impl Hash for StringEq {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.original.hash(state);
    }
}

impl fmt::Display for StringEq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.original)
    }
}

impl StringEq {
    fn new(
        column: Arc<dyn PhysicalExpr>,
        needle: &str,
        negated: bool,
        column_left: bool,
        original: Arc<dyn PhysicalExpr>,
    ) -> StringEq {
        let needle = needle.as_bytes().to_vec();
        let repeated = if needle.is_empty() {
            Vec::new()
        } else {
            needle.repeat((REPEATED_BYTES / needle.len()).max(1))
        };
        StringEq {
            column,
            needle,
            negated,
            column_left,
            repeated,
            original,
        }
    }

    /// `original` if it is `string column = / != string literal`, as a [`StringEq`].
    fn from_binary(original: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Option<StringEq> {
        let b = original.downcast_ref::<BinaryExpr>()?;
        let negated = match b.op() {
            Operator::Eq => false,
            Operator::NotEq => true,
            _ => return None,
        };
        let (column, literal, column_left) = match (
            b.left().downcast_ref::<Column>(),
            b.right().downcast_ref::<Literal>(),
        ) {
            (Some(_), Some(l)) => (b.left(), l, true),
            _ => match (
                b.right().downcast_ref::<Column>(),
                b.left().downcast_ref::<Literal>(),
            ) {
                (Some(_), Some(l)) => (b.right(), l, false),
                _ => return None,
            },
        };
        let needle = match literal.value() {
            ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => s,
            _ => return None,
        };
        match column.data_type(schema).ok()? {
            DataType::Utf8 | DataType::LargeUtf8 => {}
            _ => return None,
        }
        Some(StringEq::new(
            Arc::clone(column),
            needle,
            negated,
            column_left,
            Arc::clone(original),
        ))
    }

    fn equal<O: OffsetSizeTrait>(&self, a: &GenericStringArray<O>) -> BooleanArray {
        let offsets = a.value_offsets();
        let bytes = a.value_data();
        let len = self.needle.len();
        let n = a.len();
        let bits = if self.all_needle(offsets, bytes) {
            BooleanBuffer::new_set(n)
        } else {
            BooleanBuffer::collect_bool(n, |i| {
                let (s, e) = (offsets[i].as_usize(), offsets[i + 1].as_usize());
                e - s == len && bytes[s..e] == self.needle[..]
            })
        };
        let bits = if self.negated { !&bits } else { bits };
        BooleanArray::new(bits, a.nulls().cloned())
    }

    /// Whether every row of the array (null or not) holds the needle's bytes.
    fn all_needle<O: OffsetSizeTrait>(&self, offsets: &[O], bytes: &[u8]) -> bool {
        let (Some(first), Some(last)) = (offsets.first(), offsets.last()) else {
            return true;
        };
        let (first, last) = (first.as_usize(), last.as_usize());
        let len = self.needle.len();
        let rows = offsets.len() - 1;
        if last - first != rows * len {
            return false;
        }
        // Every row exactly `len` long (no early exit: this loop vectorises).
        let step = O::usize_as(len);
        let lengths = offsets
            .windows(2)
            .fold(true, |ok, w| ok & (w[1] - w[0] == step));
        if !lengths || len == 0 {
            return lengths;
        }
        bytes[first..last]
            .chunks(self.repeated.len())
            .all(|c| c == &self.repeated[..c.len()])
    }
}

impl PhysicalExpr for StringEq {
    fn data_type(&self, _: &Schema) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, schema: &Schema) -> Result<bool> {
        self.original.nullable(schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let values: ArrayRef = self.column.evaluate(batch)?.into_array(batch.num_rows())?;
        let out = match values.data_type() {
            DataType::Utf8 => self.equal(values.as_string::<i32>()),
            DataType::LargeUtf8 => self.equal(values.as_string::<i64>()),
            _ => return self.original.evaluate(batch),
        };
        Ok(ColumnarValue::Array(Arc::new(out)))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.column]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        // A rewritten column: compute the comparison the ordinary way.
        let mut both: Vec<Arc<dyn PhysicalExpr>> =
            self.original.children().into_iter().cloned().collect();
        if let (Some(c), Some(slot)) = (
            children.into_iter().next(),
            both.get_mut(usize::from(!self.column_left)),
        ) {
            *slot = c;
        }
        Arc::clone(&self.original).with_new_children(both)
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.original.fmt_sql(f)
    }
}

/// Puts [`StringEq`] in place of string equalities in every `FilterExec` predicate.
#[derive(Debug, Default)]
pub(crate) struct StringEqRule;

impl PhysicalOptimizerRule for StringEqRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(filter) = node.downcast_ref::<FilterExec>() else {
                return Ok(Transformed::no(node));
            };
            let schema = filter.input().schema();
            let predicate = Arc::clone(filter.predicate()).transform_up(|e| {
                Ok(match StringEq::from_binary(&e, &schema) {
                    Some(fast) => Transformed::yes(Arc::new(fast) as Arc<dyn PhysicalExpr>),
                    None => Transformed::no(e),
                })
            })?;
            if !predicate.transformed {
                return Ok(Transformed::no(node));
            }
            let rebuilt = FilterExecBuilder::from(filter)
                .with_predicate(predicate.data)
                .build()?;
            Ok(Transformed::yes(Arc::new(rebuilt) as Arc<dyn ExecutionPlan>))
        })
        .data()
    }

    fn name(&self) -> &str {
        "string_eq"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{LargeStringArray, StringArray};
    use datafusion::arrow::compute::kernels::cmp;
    use datafusion::arrow::datatypes::Field;
    use datafusion::physical_expr::expressions::{col, lit};

    fn batch(values: ArrayRef) -> RecordBatch {
        let schema = Schema::new(vec![Field::new("s", values.data_type().clone(), true)]);
        RecordBatch::try_new(Arc::new(schema), vec![values]).expect("batch")
    }

    fn fast(b: &RecordBatch, needle: &str, op: Operator) -> StringEq {
        let schema = b.schema();
        let column = col("s", &schema).expect("column");
        let original: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(column, op, lit(needle)));
        StringEq::from_binary(&original, &schema).expect("a string equality")
    }

    /// What arrow's kernel answers.
    fn kernel(values: &ArrayRef, needle: &str, negated: bool) -> BooleanArray {
        let large = matches!(values.data_type(), DataType::LargeUtf8);
        match (large, negated) {
            (false, false) => cmp::eq(values, &StringArray::new_scalar(needle)),
            (false, true) => cmp::neq(values, &StringArray::new_scalar(needle)),
            (true, false) => cmp::eq(values, &LargeStringArray::new_scalar(needle)),
            (true, true) => cmp::neq(values, &LargeStringArray::new_scalar(needle)),
        }
        .expect("kernel")
    }

    fn answer(e: &StringEq, b: &RecordBatch) -> BooleanArray {
        match e.evaluate(b).expect("evaluate") {
            ColumnarValue::Array(a) => a.as_boolean().clone(),
            ColumnarValue::Scalar(_) => panic!("an array"),
        }
    }

    #[test]
    fn answers_as_the_kernel_does() {
        let cases: Vec<Vec<Option<&str>>> = vec![
            vec![Some("ws"); 5],
            vec![Some("ws"), None, Some("ws")],
            vec![Some("ws"), Some("wt"), Some("ws")],
            vec![Some("w"), Some("sw"), Some("s")],
            vec![Some("wsws"), Some(""), Some("ws")],
            vec![Some(""), Some(""), Some("")],
            vec![],
            vec![None, None],
        ];
        for rows in cases {
            for large in [false, true] {
                let values: ArrayRef = if large {
                    Arc::new(LargeStringArray::from(rows.clone()))
                } else {
                    Arc::new(StringArray::from(rows.clone()))
                };
                // Sliced too: offsets that do not start at zero.
                let sliced =
                    values.slice(usize::from(!rows.is_empty()), rows.len().saturating_sub(1));
                for values in [values, sliced] {
                    let b = batch(Arc::clone(&values));
                    for needle in ["ws", "", "w", "wsws"] {
                        for (op, negated) in [(Operator::Eq, false), (Operator::NotEq, true)] {
                            assert_eq!(
                                answer(&fast(&b, needle, op), &b),
                                kernel(&values, needle, negated),
                                "{rows:?} {op} {needle:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_batch_longer_than_the_repeated_needle_is_compared_whole() {
        let n = REPEATED_BYTES;
        let mut rows = vec!["abc"; n];
        let b = batch(Arc::new(StringArray::from(rows.clone())));
        assert_eq!(answer(&fast(&b, "abc", Operator::Eq), &b).true_count(), n);
        rows[n - 1] = "abd";
        let b = batch(Arc::new(StringArray::from(rows)));
        let a = answer(&fast(&b, "abc", Operator::Eq), &b);
        assert_eq!(a.true_count(), n - 1);
        assert!(!a.value(n - 1));
    }

    #[test]
    fn only_string_equalities_are_taken() {
        let schema = Schema::new(vec![
            Field::new("s", DataType::Utf8, false),
            Field::new("i", DataType::Int64, false),
        ]);
        let s = col("s", &schema).expect("s");
        let i = col("i", &schema).expect("i");
        let take = |e: BinaryExpr| StringEq::from_binary(&(Arc::new(e) as _), &schema).is_some();
        assert!(take(BinaryExpr::new(
            Arc::clone(&s),
            Operator::Eq,
            lit("x")
        )));
        assert!(take(BinaryExpr::new(
            lit("x"),
            Operator::NotEq,
            Arc::clone(&s)
        )));
        assert!(!take(BinaryExpr::new(
            Arc::clone(&s),
            Operator::Lt,
            lit("x")
        )));
        assert!(!take(BinaryExpr::new(i, Operator::Eq, lit(1i64))));
        assert!(!take(BinaryExpr::new(
            s,
            Operator::Eq,
            lit(ScalarValue::Utf8(None))
        )));
    }
}
