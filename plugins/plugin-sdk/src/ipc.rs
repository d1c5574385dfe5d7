//! Arrow IPC streams: what the host passes in (query results) and takes back (transform output).

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{Schema, SchemaRef};

/// The schema and batches of one IPC stream. An empty byte string reads as no batches and an
/// empty schema (a query that returned nothing at all).
///
/// # Errors
/// A message saying what is wrong with the bytes.
pub fn read(bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
    if bytes.is_empty() {
        return Ok((Arc::new(Schema::empty()), Vec::new()));
    }
    // A stream starts with a continuation marker and the first message's length; checking them
    // keeps garbage from being read as a gigantic length (and an allocation to match).
    let sane = bytes.len() >= 8
        && bytes[..4] == [0xff; 4]
        && usize::try_from(u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]))
            .is_ok_and(|n| n <= bytes.len() - 8);
    if !sane {
        return Err("not an Arrow IPC stream (no stream header)".into());
    }
    let reader =
        StreamReader::try_new(bytes, None).map_err(|e| format!("not an Arrow IPC stream: {e}"))?;
    let schema = reader.schema();
    let mut batches = Vec::new();
    for b in reader {
        batches.push(b.map_err(|e| format!("a bad batch in the Arrow IPC stream: {e}"))?);
    }
    Ok((schema, batches))
}

/// One IPC stream of `batches` (all with `schema`).
///
/// # Errors
/// When a batch does not match the schema.
pub fn write(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut w = StreamWriter::try_new(&mut out, schema).map_err(|e| e.to_string())?;
        for b in batches {
            w.write(b).map_err(|e| e.to_string())?;
        }
        w.finish().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, StringArray};
    use arrow_schema::{DataType, Field};

    #[test]
    fn streams_round_trip() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("service", DataType::Utf8, false),
            Field::new("value", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(Float64Array::from(vec![Some(1.0), None])),
            ],
        )
        .expect("batch");
        let bytes = write(&schema, std::slice::from_ref(&batch)).expect("write");
        let (s, batches) = read(&bytes).expect("read");
        assert_eq!(s, schema);
        assert_eq!(batches, vec![batch]);
        assert!(read(b"garbage").is_err());
        assert_eq!(read(&[]).expect("empty").1.len(), 0);
    }
}
