//! The alerting port: rules, notification groups and their links, channels (config sealed by
//! the caller), silences, and each rule's evaluation state. JSON columns are kept as text and
//! interpreted by the caller (`alert::spec`); the store never opens a channel's config.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use model::Scope;

use crate::{MetaError, Page};

/// An alert rule. `query_config`, `condition_config` and `settings` are JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRuleRecord {
    pub alert_rule_id: String,
    pub organization_id: String,
    pub workspace_id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: String,
    pub query_type: String,
    pub query_config: String,
    pub condition_config: String,
    pub settings: String,
    pub severity: String,
    pub cooldown_minutes: i64,
    pub is_enabled: bool,
    pub last_evaluated_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// What a create or a full update writes.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleWrite {
    pub name: String,
    pub description: String,
    pub query_type: String,
    pub query_config: String,
    pub condition_config: String,
    pub settings: String,
    pub severity: String,
    pub cooldown_minutes: i64,
    pub is_enabled: bool,
}

/// A notification group; `routing` is JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRecord {
    pub group_id: String,
    pub workspace_id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: String,
    pub routing: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupWrite {
    pub name: String,
    pub description: String,
    pub routing: String,
    pub is_active: bool,
}

/// A notification channel: its plugin and its sealed config.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRecord {
    pub channel_id: String,
    pub notification_group_id: String,
    pub workspace_id: String,
    pub tenant_id: String,
    pub name: String,
    pub channel_type: String,
    pub plugin_id: String,
    pub config_encrypted: String,
    /// JSON array of the config's top-level keys.
    pub config_keys: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a create or an update writes (the caller chose the id, which the sealed config is
/// bound to).
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelWrite {
    pub notification_group_id: String,
    pub name: String,
    pub channel_type: String,
    pub plugin_id: String,
    pub config_encrypted: String,
    pub config_keys: String,
    pub is_active: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SilenceRecord {
    pub silence_id: String,
    pub workspace_id: String,
    pub tenant_id: String,
    /// JSON array of matcher strings.
    pub matchers: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub comment: String,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewSilence {
    pub matchers: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub comment: String,
    pub created_by: Option<String>,
}

/// What a rule's evaluations carry from one to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleStateRecord {
    pub alert_rule_id: String,
    /// The state machine's state (`alert::RuleState`) as JSON.
    pub instances: String,
    pub plugin_state: Option<Vec<u8>>,
    pub last_evaluated_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub evaluations: i64,
    pub skipped_ticks: i64,
    pub updated_at: DateTime<Utc>,
}

/// One attempt to deliver a notification through a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub attempt_id: String,
    pub channel_id: String,
    pub notification_group_id: String,
    pub workspace_id: String,
    pub tenant_id: String,
    pub group_key: String,
    pub idempotency_key: String,
    /// 1-based.
    pub attempt: i64,
    /// `delivered`, `permanent`, `transient`, `rate_limited` or `gave_up`.
    pub outcome: String,
    pub message: String,
    /// Alerts the notification carried.
    pub alerts: i64,
    /// `firing` or `resolved`.
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// A notification waiting to be delivered through one channel (the delivery outbox).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    pub outbox_id: String,
    pub channel_id: String,
    pub notification_group_id: String,
    pub workspace_id: String,
    pub tenant_id: String,
    /// The notification as the dispatcher made it (JSON).
    pub notification: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// When it became due (retries are bounded by its age).
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
}

/// What a delivery attempt does to its outbox row, written with the attempt's records.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OutboxStep<'a> {
    /// The delivery goes on: `attempts` made so far, the next due at `next_attempt_at`.
    Retry {
        outbox_id: &'a str,
        attempts: i64,
        next_attempt_at: DateTime<Utc>,
    },
    /// The delivery ended (delivered, refused for good or given up): the row goes.
    Done { outbox_id: &'a str },
}

/// Alert rules and where their notifications go.
#[async_trait]
pub trait AlertStore: Send + Sync + 'static {
    // ---- rules ---------------------------------------------------------------------------

    /// A new rule in `scope`'s tenant, linked to `groups` (which must be the tenant's).
    async fn create_rule(
        &self,
        scope: &Scope,
        rule: RuleWrite,
        groups: &[String],
        created_by: Option<&str>,
    ) -> Result<AlertRuleRecord, MetaError>;
    /// A rule by id, deleted or not.
    async fn rule(&self, alert_rule_id: &str) -> Result<Option<AlertRuleRecord>, MetaError>;
    /// A tenant's rules that are not deleted, by name then id.
    async fn rules(&self, tenant_id: &str, page: &Page) -> Result<Vec<AlertRuleRecord>, MetaError>;
    /// Every enabled, not deleted rule of every live tenant (what the scheduler runs).
    async fn enabled_rules(&self) -> Result<Vec<AlertRuleRecord>, MetaError>;
    /// Replaces a rule's fields and its group links.
    async fn update_rule(
        &self,
        alert_rule_id: &str,
        rule: RuleWrite,
        groups: &[String],
    ) -> Result<AlertRuleRecord, MetaError>;
    /// Soft-deletes a rule (its links and state go); false if there is none.
    async fn delete_rule(&self, alert_rule_id: &str, at: DateTime<Utc>) -> Result<bool, MetaError>;
    /// The groups a rule is linked to.
    async fn rule_groups(&self, alert_rule_id: &str) -> Result<Vec<String>, MetaError>;

    // ---- notification groups -------------------------------------------------------------

    async fn create_group(
        &self,
        scope: &Scope,
        group: GroupWrite,
    ) -> Result<GroupRecord, MetaError>;
    async fn group(&self, group_id: &str) -> Result<Option<GroupRecord>, MetaError>;
    async fn groups(&self, tenant_id: &str) -> Result<Vec<GroupRecord>, MetaError>;
    async fn update_group(
        &self,
        group_id: &str,
        group: GroupWrite,
    ) -> Result<GroupRecord, MetaError>;
    /// Deletes a group, its channels and its links; false if there is none.
    async fn delete_group(&self, group_id: &str) -> Result<bool, MetaError>;
    /// The rules linked to a group (not deleted).
    async fn group_rules(&self, group_id: &str) -> Result<Vec<String>, MetaError>;

    // ---- channels ------------------------------------------------------------------------

    /// A new channel with the id its config was sealed for.
    async fn create_channel(
        &self,
        scope: &Scope,
        channel_id: &str,
        channel: ChannelWrite,
    ) -> Result<ChannelRecord, MetaError>;
    async fn channel(&self, channel_id: &str) -> Result<Option<ChannelRecord>, MetaError>;
    /// A tenant's channels; `group_id` narrows to one group's.
    async fn channels(
        &self,
        tenant_id: &str,
        group_id: Option<&str>,
    ) -> Result<Vec<ChannelRecord>, MetaError>;
    async fn update_channel(
        &self,
        channel_id: &str,
        channel: ChannelWrite,
    ) -> Result<ChannelRecord, MetaError>;
    async fn delete_channel(&self, channel_id: &str) -> Result<bool, MetaError>;

    // ---- silences ------------------------------------------------------------------------

    async fn create_silence(
        &self,
        scope: &Scope,
        silence: NewSilence,
    ) -> Result<SilenceRecord, MetaError>;
    async fn silence(&self, silence_id: &str) -> Result<Option<SilenceRecord>, MetaError>;
    /// A tenant's silences; with `active_at`, only those not yet ended then.
    async fn silences(
        &self,
        tenant_id: &str,
        active_at: Option<DateTime<Utc>>,
    ) -> Result<Vec<SilenceRecord>, MetaError>;
    /// Ends a silence at `at` (if it had not ended); the record, or none.
    async fn expire_silence(
        &self,
        silence_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<SilenceRecord>, MetaError>;

    // ---- evaluation state ----------------------------------------------------------------

    async fn rule_state(&self, alert_rule_id: &str) -> Result<Option<RuleStateRecord>, MetaError>;
    /// Writes rules' states (and their `last_evaluated_at`) in one transaction.
    async fn put_rule_states(&self, states: &[RuleStateRecord]) -> Result<(), MetaError>;
    /// Writes a rule's state (and its `last_evaluated_at`).
    async fn put_rule_state(&self, state: RuleStateRecord) -> Result<(), MetaError> {
        self.put_rule_states(std::slice::from_ref(&state)).await
    }

    // ---- delivery ------------------------------------------------------------------------

    /// Records a delivery attempt (and, when it gave up, the `gave_up` record) and moves its
    /// outbox row on, in one transaction: a delivery cut at any point resumes with an attempt
    /// count that matches the records.
    async fn record_attempt(
        &self,
        attempts: &[AttemptRecord],
        step: OutboxStep<'_>,
    ) -> Result<(), MetaError>;
    /// A channel's attempts, newest first.
    async fn attempts(&self, channel_id: &str, limit: u32)
    -> Result<Vec<AttemptRecord>, MetaError>;
    /// A notification group's dispatch state (JSON), if it has one.
    async fn group_state(&self, group_id: &str) -> Result<Option<String>, MetaError>;
    /// Writes a group's dispatch state and, in the same transaction, the deliveries it made
    /// due into the outbox.
    async fn put_group_state(
        &self,
        group_id: &str,
        dispatcher: &str,
        deliveries: &[OutboxRecord],
    ) -> Result<(), MetaError>;
    /// Every delivery not finished yet, oldest first.
    async fn outbox(&self) -> Result<Vec<OutboxRecord>, MetaError>;
    /// Removes a delivery that cannot be made (its channel is gone, its notification does
    /// not parse).
    async fn outbox_done(&self, outbox_id: &str) -> Result<(), MetaError>;
}
