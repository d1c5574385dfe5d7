//! Time columns and durations: finding the time column of a result, reading it as unix
//! milliseconds, building one of the same type, and parsing durations such as `5m`.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int64Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_array::{Array, ArrayRef, Int64Array, PrimitiveArray};
use arrow_schema::{DataType, Schema, TimeUnit};

/// Column names taken as time when no column has a timestamp type.
const TIME_NAMES: [&str; 6] = ["time", "timestamp", "ts", "bucket", "time_bucket", "t"];

/// The index of the time column: `name` if given, else the first timestamp-typed column, else
/// an `Int64` column called `time`, `timestamp`, `ts`, `bucket` or `t` (unix milliseconds).
///
/// # Errors
/// No such column, or it is not a timestamp or integer.
pub fn column(schema: &Schema, name: Option<&str>) -> Result<usize, String> {
    if let Some(name) = name {
        let i = schema
            .index_of(name)
            .map_err(|_| format!("no column {name:?} in the input"))?;
        return match schema.field(i).data_type() {
            DataType::Timestamp(..) | DataType::Int64 => Ok(i),
            other => Err(format!(
                "column {name:?} is {other}, not a timestamp or Int64 of milliseconds"
            )),
        };
    }
    if let Some(i) = schema
        .fields()
        .iter()
        .position(|f| matches!(f.data_type(), DataType::Timestamp(..)))
    {
        return Ok(i);
    }
    schema
        .fields()
        .iter()
        .position(|f| f.data_type() == &DataType::Int64 && TIME_NAMES.contains(&f.name().as_str()))
        .ok_or_else(|| {
            "the input has no time column (a timestamp column, or an Int64 named time, \
             timestamp, ts or bucket); name one with time_column"
                .to_string()
        })
}

/// The cell as unix milliseconds (`None` when null or not a time type).
pub fn millis_at(array: &dyn Array, row: usize) -> Option<i64> {
    if array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => array
            .as_primitive::<TimestampSecondType>()
            .value(row)
            .saturating_mul(1000),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            array.as_primitive::<TimestampMillisecondType>().value(row)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            array.as_primitive::<TimestampMicrosecondType>().value(row) / 1000
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            array.as_primitive::<TimestampNanosecondType>().value(row) / 1_000_000
        }
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row),
        _ => return None,
    })
}

/// A column of type `like` (a timestamp of any unit, or Int64 milliseconds) from milliseconds.
pub fn array_of(like: &DataType, millis: Vec<Option<i64>>) -> ArrayRef {
    match like {
        DataType::Timestamp(unit, tz) => {
            let scaled = millis.into_iter().map(|m| {
                m.map(|m| match unit {
                    TimeUnit::Second => m / 1000,
                    TimeUnit::Millisecond => m,
                    TimeUnit::Microsecond => m.saturating_mul(1000),
                    TimeUnit::Nanosecond => m.saturating_mul(1_000_000),
                })
            });
            match unit {
                TimeUnit::Second => Arc::new(
                    PrimitiveArray::<TimestampSecondType>::from_iter(scaled)
                        .with_timezone_opt(tz.clone()),
                ),
                TimeUnit::Millisecond => Arc::new(
                    PrimitiveArray::<TimestampMillisecondType>::from_iter(scaled)
                        .with_timezone_opt(tz.clone()),
                ),
                TimeUnit::Microsecond => Arc::new(
                    PrimitiveArray::<TimestampMicrosecondType>::from_iter(scaled)
                        .with_timezone_opt(tz.clone()),
                ),
                TimeUnit::Nanosecond => Arc::new(
                    PrimitiveArray::<TimestampNanosecondType>::from_iter(scaled)
                        .with_timezone_opt(tz.clone()),
                ),
            }
        }
        _ => Arc::new(Int64Array::from(millis)),
    }
}

/// A duration such as `500ms`, `30s`, `5m`, `2h`, `1d` or `1w` (a bare number is milliseconds),
/// in milliseconds.
///
/// # Errors
/// Text that is not a positive duration.
pub fn duration_ms(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s, 5m, 1h or 1d"))?;
    let factor = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; use ms, s, m, h, d or w"
            ));
        }
    };
    match n.checked_mul(factor) {
        Some(ms) if ms > 0 => Ok(ms),
        _ => Err(format!("{text:?} must be a positive duration")),
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::TimestampNanosecondArray;
    use arrow_schema::Field;

    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_ms("5m"), Ok(300_000));
        assert_eq!(duration_ms("250"), Ok(250));
        assert_eq!(duration_ms("1w"), Ok(604_800_000));
        assert!(duration_ms("0s").is_err());
        assert!(duration_ms("5 parsecs").is_err());
        assert!(duration_ms("m").is_err());
    }

    #[test]
    fn time_columns_by_type_then_name() {
        let s = Schema::new(vec![
            Field::new("service", DataType::Utf8, false),
            Field::new("ts", DataType::Int64, false),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
        ]);
        assert_eq!(column(&s, None), Ok(2));
        assert_eq!(column(&s, Some("ts")), Ok(1));
        assert!(column(&s, Some("service")).is_err());
        let a = TimestampNanosecondArray::from(vec![1_500_000_000i64]).with_timezone("UTC");
        assert_eq!(millis_at(&a, 0), Some(1500));
        let back = array_of(a.data_type(), vec![Some(1500), None]);
        assert_eq!(back.data_type(), a.data_type());
        assert_eq!(millis_at(back.as_ref(), 0), Some(1500));
        assert!(back.is_null(1));
    }
}
