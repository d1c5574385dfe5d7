//! Arrow batches to and from ClickHouse.
//!
//! ClickHouse's ArrowStream output names map entries `key`/`value` and may mark fields non-null
//! where our schemas allow nulls; the data layout is the same. [`conform`] rebuilds a batch under
//! our schema by position, relabelling nested types and casting leaves where types differ.

use std::sync::Arc;

use arrow::array::{ArrayData, ArrayRef, RecordBatch, RecordBatchOptions, make_array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::writer::StreamWriter;

/// Encodes batches as one Arrow IPC stream (the body of `INSERT … FORMAT ArrowStream`).
///
/// # Errors
/// When Arrow cannot encode the batches (they do not share a schema).
pub fn encode_stream(batches: &[RecordBatch]) -> Result<Vec<u8>, ArrowError> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(batches.iter().map(RecordBatch::get_array_memory_size).sum());
    let mut w = StreamWriter::try_new(&mut out, &first.schema())?;
    for b in batches {
        w.write(b)?;
    }
    w.finish()?;
    drop(w);
    Ok(out)
}

fn relabel(data: ArrayData, target: &DataType) -> Result<ArrayData, ArrowError> {
    if data.data_type() == target {
        return Ok(data);
    }
    let children: Vec<ArrayData> = match (data.data_type(), target) {
        (DataType::List(_), DataType::List(f)) | (DataType::Map(_, _), DataType::Map(f, _)) => {
            let child =
                data.child_data().first().cloned().ok_or_else(|| {
                    ArrowError::InvalidArgumentError("list without values".into())
                })?;
            vec![relabel(child, f.data_type())?]
        }
        (DataType::Struct(from), DataType::Struct(to)) if from.len() == to.len() => data
            .child_data()
            .iter()
            .zip(to.iter())
            .map(|(c, f)| relabel(c.clone(), f.data_type()))
            .collect::<Result<_, _>>()?,
        _ => {
            let array = make_array(data);
            return Ok(cast(&array, target)?.to_data());
        }
    };
    data.into_builder()
        .data_type(target.clone())
        .child_data(children)
        .build()
}

/// `batch` under `schema`, column by column in order.
///
/// # Errors
/// When the column count differs or a column cannot be converted.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.num_columns() != schema.fields().len() {
        return Err(ArrowError::SchemaError(format!(
            "ClickHouse returned {} columns, expected {}",
            batch.num_columns(),
            schema.fields().len()
        )));
    }
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(Arc::clone(c))
            } else {
                relabel(c.to_data(), f.data_type()).map(make_array)
            }
        })
        .collect::<Result<_, ArrowError>>()?;
    RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
}
