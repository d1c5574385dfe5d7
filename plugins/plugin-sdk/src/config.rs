//! Typed configs from the JSON text the host passes, with errors that point at the bad field.

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

/// One problem with a config: a JSON Pointer (`/thresholds/0/op`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub path: String,
    pub message: String,
}

/// Parses `json` into `T` (empty text reads as `{}`).
///
/// # Errors
/// The problem, with the JSON Pointer of the field it is in.
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T, ConfigProblem> {
    let text = if json.trim().is_empty() { "{}" } else { json };
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path: String = e
            .path()
            .iter()
            .filter_map(|s| match s {
                Segment::Seq { index } => Some(format!("/{index}")),
                Segment::Map { key } => {
                    Some(format!("/{}", key.replace('~', "~0").replace('/', "~1")))
                }
                Segment::Enum { .. } | Segment::Unknown => None,
            })
            .collect();
        ConfigProblem {
            path,
            message: e.into_inner().to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct C {
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        value: f64,
    }

    #[test]
    fn problems_point_at_the_field() {
        let err = parse::<C>(r#"{"items":[{"value":1},{"value":"x"}]}"#).expect_err("bad");
        assert_eq!(err.path, "/items/1/value");
        assert!(parse::<C>("").is_ok());
        let err = parse::<C>(r#"{"other":1}"#).expect_err("unknown field");
        assert!(err.message.contains("unknown field"), "{}", err.message);
    }
}
