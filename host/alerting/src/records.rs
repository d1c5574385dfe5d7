//! Specs as users write them (`alert::spec`) ↔ rows as the store keeps them: a rule's own
//! columns, its query and condition JSON, and the rest as its `settings` JSON; a group's
//! routing JSON.

use alert::spec::{GroupSpec, RuleSpec};
use serde_json::{Value, json};
use storage::{AlertRuleRecord, GroupRecord, GroupWrite, RuleWrite};

/// Fields kept in their own columns; the rest of a rule spec is the `settings` JSON.
const RULE_COLUMNS: [&str; 10] = [
    "name",
    "description",
    "query_type",
    "queries",
    "condition",
    "composite",
    "severity",
    "cooldown_minutes",
    "enabled",
    "notification_groups",
];

/// The row of a rule spec (its group links are kept apart).
pub fn rule_write(spec: &RuleSpec) -> RuleWrite {
    let mut v = serde_json::to_value(spec).unwrap_or_else(|_| json!({}));
    let queries = v.get("queries").cloned().unwrap_or(Value::Null);
    let condition = match (&spec.condition, &spec.composite) {
        (_, Some(c)) => json!({"composite": c}),
        (Some(c), None) => json!(c),
        (None, None) => json!({}),
    };
    if let Some(obj) = v.as_object_mut() {
        for k in RULE_COLUMNS {
            obj.remove(k);
        }
    }
    RuleWrite {
        name: spec.name.clone(),
        description: spec.description.clone(),
        query_type: spec.query_type.clone(),
        query_config: json!({"queries": queries}).to_string(),
        condition_config: condition.to_string(),
        settings: v.to_string(),
        severity: spec.severity.clone(),
        cooldown_minutes: i64::from(spec.cooldown_minutes),
        is_enabled: spec.enabled,
    }
}

/// The spec a stored rule was made from, with its group links.
///
/// # Errors
/// A row this version cannot read (written by hand, or by a newer version).
pub fn rule_spec(r: &AlertRuleRecord, groups: Vec<String>) -> Result<RuleSpec, String> {
    let mut obj = match serde_json::from_str::<Value>(&r.settings) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    obj.insert("name".into(), json!(r.name));
    obj.insert("description".into(), json!(r.description));
    obj.insert("query_type".into(), json!(r.query_type));
    obj.insert("severity".into(), json!(r.severity));
    obj.insert("cooldown_minutes".into(), json!(r.cooldown_minutes));
    obj.insert("enabled".into(), json!(r.is_enabled));
    obj.insert("notification_groups".into(), json!(groups));
    let queries = serde_json::from_str::<Value>(&r.query_config)
        .ok()
        .and_then(|q| q.get("queries").cloned())
        .unwrap_or_else(|| json!([]));
    obj.insert("queries".into(), queries);
    let condition = serde_json::from_str::<Value>(&r.condition_config).unwrap_or(Value::Null);
    match condition.get("composite") {
        Some(c) => obj.insert("composite".into(), c.clone()),
        None => obj.insert("condition".into(), condition),
    };
    serde_json::from_value(Value::Object(obj))
        .map_err(|e| format!("alert rule {} cannot be read: {e}", r.alert_rule_id))
}

/// The row of a group spec.
pub fn group_write(spec: &GroupSpec) -> GroupWrite {
    let mut v = serde_json::to_value(spec).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        for k in ["name", "description", "active"] {
            o.remove(k);
        }
    }
    GroupWrite {
        name: spec.name.clone(),
        description: spec.description.clone(),
        routing: v.to_string(),
        is_active: spec.active,
    }
}

/// The spec a stored group was made from.
///
/// # Errors
/// A row this version cannot read.
pub fn group_spec(g: &GroupRecord) -> Result<GroupSpec, String> {
    let mut obj = match serde_json::from_str::<Value>(&g.routing) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    obj.insert("name".into(), json!(g.name));
    obj.insert("description".into(), json!(g.description));
    obj.insert("active".into(), json!(g.is_active));
    serde_json::from_value(Value::Object(obj))
        .map_err(|e| format!("notification group {} cannot be read: {e}", g.group_id))
}
