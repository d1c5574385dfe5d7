//! OTLP attributes → `Map(String, String)` cells.

use std::fmt::Write;

use arrow::array::{MapBuilder, StringBuilder};
use base64::Engine;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};

use super::Limits;

pub(crate) type AttrMap = MapBuilder<StringBuilder, StringBuilder>;

pub(crate) fn map_builder(capacity: usize) -> AttrMap {
    MapBuilder::with_capacity(
        None,
        StringBuilder::with_capacity(capacity * 4, capacity * 64),
        StringBuilder::with_capacity(capacity * 4, capacity * 64),
        capacity,
    )
}

/// Counts of what the limits took away from one item's attributes.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Trimmed {
    pub dropped: u32,
    pub truncated: u32,
}

/// Appends one map cell holding `attrs`, within `limits`.
pub(crate) fn append_attrs(
    map: &mut AttrMap,
    attrs: &[KeyValue],
    limits: &Limits,
    scratch: &mut String,
) -> Trimmed {
    let mut trimmed = Trimmed::default();
    for (i, kv) in attrs.iter().enumerate() {
        if i >= limits.max_attributes {
            trimmed.dropped = u32::try_from(attrs.len() - i).unwrap_or(u32::MAX);
            break;
        }
        scratch.clear();
        if let Some(v) = &kv.value {
            any_value_to_string(v, scratch);
        }
        if truncate(scratch, limits.max_attribute_value_bytes) {
            trimmed.truncated += 1;
        }
        map.keys().append_value(&kv.key);
        map.values().append_value(scratch.as_str());
    }
    // Appending a non-null entry to a map builder cannot fail.
    let _ = map.append(true);
    trimmed
}

fn truncate(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    true
}

/// The text of an attribute value: strings as they are, numbers and booleans as literals,
/// bytes as base64, arrays and key-value lists as JSON.
pub(crate) fn any_value_to_string(v: &AnyValue, out: &mut String) {
    match &v.value {
        None => {}
        Some(Value::StringValue(s)) => out.push_str(s),
        Some(Value::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(Value::DoubleValue(d)) => {
            let _ = write!(out, "{d}");
        }
        Some(Value::BytesValue(b)) => {
            base64::engine::general_purpose::STANDARD.encode_string(b, out);
        }
        Some(Value::ArrayValue(_)) | Some(Value::KvlistValue(_)) => {
            out.push_str(&any_value_to_json(v).to_string());
        }
        // A string-table index only means something inside a profiles message.
        Some(Value::StringValueStrindex(_)) => {}
    }
}

fn any_value_to_json(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.value {
        None => J::Null,
        Some(Value::StringValue(s)) => J::String(s.clone()),
        Some(Value::BoolValue(b)) => J::Bool(*b),
        Some(Value::IntValue(i)) => J::from(*i),
        Some(Value::DoubleValue(d)) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
        Some(Value::BytesValue(b)) => {
            J::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(Value::ArrayValue(a)) => J::Array(a.values.iter().map(any_value_to_json).collect()),
        Some(Value::KvlistValue(kv)) => J::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map_or(J::Null, any_value_to_json),
                    )
                })
                .collect(),
        ),
        Some(Value::StringValueStrindex(_)) => J::Null,
    }
}

/// `service.name` of a resource, or OpenTelemetry's `unknown_service` default.
pub(crate) fn service_name(attrs: &[KeyValue]) -> &str {
    attrs
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => Some(s.as_str()),
                _ => None,
            },
        )
        .unwrap_or("unknown_service")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    #[test]
    fn values_render_as_text() {
        let cases = [
            (Value::StringValue("x".into()), "x"),
            (Value::BoolValue(true), "true"),
            (Value::IntValue(-42), "-42"),
            (Value::DoubleValue(1.5), "1.5"),
            (Value::BytesValue(vec![1, 2, 3]), "AQID"),
        ];
        for (v, want) in cases {
            let mut s = String::new();
            any_value_to_string(&AnyValue { value: Some(v) }, &mut s);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn long_values_are_truncated_and_extra_attributes_dropped() {
        let limits = Limits {
            max_attributes: 2,
            max_attribute_value_bytes: 3,
        };
        let attrs = vec![
            kv("a", Value::StringValue("héllo".into())),
            kv("b", Value::IntValue(1)),
            kv("c", Value::IntValue(2)),
        ];
        let mut map = map_builder(1);
        let t = append_attrs(&mut map, &attrs, &limits, &mut String::new());
        assert_eq!((t.dropped, t.truncated), (1, 1));
        let arr = map.finish();
        let values = arr
            .values()
            .as_any()
            .downcast_ref::<arrow::array::StringArray>();
        assert_eq!(values.map(|v| v.value(0)), Some("hé"));
    }
}
