//! [`AlertStore`] over any [`Db`]: rules, groups, links, channels, silences, rule state.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use model::Scope;
use storage::{
    AlertRuleRecord, AlertStore, AttemptRecord, ChannelRecord, ChannelWrite, GroupRecord,
    GroupWrite, MetaError, NewSilence, OutboxRecord, OutboxStep, Page, RuleStateRecord, RuleWrite,
    SilenceRecord,
};

use crate::args;
use crate::db::{DbError, Row, Tx};
use crate::store::{Sql, SqlMetaStore, backend, conflict, new_id};

fn rule_from(r: &Row) -> Result<AlertRuleRecord, DbError> {
    Ok(AlertRuleRecord {
        alert_rule_id: r.text("alert_rule_id")?,
        organization_id: r.text("organization_id")?,
        workspace_id: r.text("workspace_id")?,
        tenant_id: r.text("tenant_id")?,
        name: r.text("name")?,
        description: r.text("description")?,
        query_type: r.text("query_type")?,
        query_config: r.text("query_config")?,
        condition_config: r.text("condition_config")?,
        settings: r.text("settings")?,
        severity: r.text("severity")?,
        cooldown_minutes: r.int("cooldown_minutes")?,
        is_enabled: r.bool("is_enabled")?,
        last_evaluated_at: r.opt_time("last_evaluated_at")?,
        created_by: r.opt_text("created_by")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        deleted_at: r.opt_time("deleted_at")?,
    })
}

/// Rules with their organization.
const RULE_SELECT: &str = "SELECT r.*, w.organization_id FROM alert_rules r \
     JOIN workspaces w ON w.workspace_id = r.workspace_id";

fn group_from(r: &Row) -> Result<GroupRecord, DbError> {
    Ok(GroupRecord {
        group_id: r.text("group_id")?,
        workspace_id: r.text("workspace_id")?,
        tenant_id: r.text("tenant_id")?,
        name: r.text("name")?,
        description: r.text("description")?,
        routing: r.text("routing")?,
        is_active: r.bool("is_active")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn channel_from(r: &Row) -> Result<ChannelRecord, DbError> {
    Ok(ChannelRecord {
        channel_id: r.text("channel_id")?,
        notification_group_id: r.text("notification_group_id")?,
        workspace_id: r.text("workspace_id")?,
        tenant_id: r.text("tenant_id")?,
        name: r.text("name")?,
        channel_type: r.text("channel_type")?,
        plugin_id: r.text("plugin_id")?,
        config_encrypted: r.text("config_encrypted")?,
        config_keys: r.text("config_keys")?,
        is_active: r.bool("is_active")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn silence_from(r: &Row) -> Result<SilenceRecord, DbError> {
    Ok(SilenceRecord {
        silence_id: r.text("silence_id")?,
        workspace_id: r.text("workspace_id")?,
        tenant_id: r.text("tenant_id")?,
        matchers: r.text("matchers")?,
        starts_at: r.time("starts_at")?,
        ends_at: r.time("ends_at")?,
        comment: r.text("comment")?,
        created_by: r.opt_text("created_by")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn state_from(r: &Row) -> Result<RuleStateRecord, DbError> {
    Ok(RuleStateRecord {
        alert_rule_id: r.text("alert_rule_id")?,
        instances: r.text("instances")?,
        plugin_state: r.opt_bytes("plugin_state")?,
        last_evaluated_at: r.opt_time("last_evaluated_at")?,
        last_error: r.opt_text("last_error")?,
        evaluations: r.int("evaluations")?,
        skipped_ticks: r.int("skipped_ticks")?,
        updated_at: r.time("updated_at")?,
    })
}

fn attempt_from(r: &Row) -> Result<AttemptRecord, DbError> {
    Ok(AttemptRecord {
        attempt_id: r.text("attempt_id")?,
        channel_id: r.text("channel_id")?,
        notification_group_id: r.text("notification_group_id")?,
        workspace_id: r.text("workspace_id")?,
        tenant_id: r.text("tenant_id")?,
        group_key: r.text("group_key")?,
        idempotency_key: r.text("idempotency_key")?,
        attempt: r.int("attempt")?,
        outcome: r.text("outcome")?,
        message: r.text("message")?,
        alerts: r.int("alerts")?,
        status: r.text("status")?,
        created_at: r.time("created_at")?,
    })
}

fn outbox_from(r: &Row) -> Result<OutboxRecord, DbError> {
    Ok(OutboxRecord {
        outbox_id: r.text("outbox_id")?,
        channel_id: r.text("channel_id")?,
        notification_group_id: r.text("notification_group_id")?,
        workspace_id: r.text("workspace_id")?,
        tenant_id: r.text("tenant_id")?,
        notification: r.text("notification")?,
        attempts: r.int("attempts")?,
        created_at: r.time("created_at")?,
        next_attempt_at: r.time("next_attempt_at")?,
    })
}

pub(crate) fn all<T>(rows: &[Row], f: fn(&Row) -> Result<T, DbError>) -> Result<Vec<T>, MetaError> {
    rows.iter()
        .map(f)
        .collect::<Result<_, _>>()
        .map_err(backend)
}

/// Replaces a rule's links with `groups`, each of which must be a group of `tenant_id`.
async fn link_groups(
    tx: &mut dyn Tx,
    alert_rule_id: &str,
    tenant_id: &str,
    groups: &[String],
    at: DateTime<Utc>,
) -> Result<(), MetaError> {
    tx.execute(
        "DELETE FROM alert_rule_notification_groups WHERE alert_rule_id = $1",
        args![alert_rule_id],
    )
    .await
    .map_err(backend)?;
    let mut seen = std::collections::BTreeSet::new();
    for g in groups {
        if !seen.insert(g.as_str()) {
            continue;
        }
        let found = tx
            .fetch_one(
                "SELECT group_id FROM notification_groups WHERE group_id = $1 AND tenant_id = $2",
                args![g, tenant_id],
            )
            .await
            .map_err(backend)?;
        if found.is_none() {
            return Err(MetaError::Invalid(format!(
                "notification group {g} not found"
            )));
        }
        tx.execute(
            "INSERT INTO alert_rule_notification_groups \
             (id, alert_rule_id, notification_group_id, created_at) VALUES ($1, $2, $3, $4)",
            args![new_id(), alert_rule_id, g, at],
        )
        .await
        .map_err(backend)?;
    }
    Ok(())
}

impl SqlMetaStore {
    pub(crate) async fn fetch_one_of<T>(
        &self,
        sql: &str,
        id: &str,
        f: fn(&Row) -> Result<T, DbError>,
    ) -> Result<Option<T>, MetaError> {
        self.db
            .fetch_one(sql, args![id])
            .await
            .map_err(backend)?
            .map(|r| f(&r))
            .transpose()
            .map_err(backend)
    }
}

#[async_trait]
impl AlertStore for SqlMetaStore {
    async fn create_rule(
        &self,
        scope: &Scope,
        rule: RuleWrite,
        groups: &[String],
        created_by: Option<&str>,
    ) -> Result<AlertRuleRecord, MetaError> {
        let at = Utc::now();
        let id = new_id();
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        tx.execute(
            "INSERT INTO alert_rules (alert_rule_id, workspace_id, tenant_id, name, description, \
             query_type, query_config, condition_config, settings, severity, cooldown_minutes, \
             is_enabled, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)",
            args![
                &id,
                &scope.workspace_id,
                &scope.tenant_id,
                rule.name,
                rule.description,
                rule.query_type,
                rule.query_config,
                rule.condition_config,
                rule.settings,
                rule.severity,
                rule.cooldown_minutes,
                rule.is_enabled,
                created_by,
                at
            ],
        )
        .await
        .map_err(backend)?;
        link_groups(tx.as_mut(), &id, &scope.tenant_id, groups, at).await?;
        tx.commit().await.map_err(backend)?;
        self.rule(&id)
            .await?
            .ok_or(MetaError::NotFound("alert rule"))
    }

    async fn rule(&self, alert_rule_id: &str) -> Result<Option<AlertRuleRecord>, MetaError> {
        self.fetch_one_of(
            &format!("{RULE_SELECT} WHERE r.alert_rule_id = $1"),
            alert_rule_id,
            rule_from,
        )
        .await
    }

    async fn rules(&self, tenant_id: &str, page: &Page) -> Result<Vec<AlertRuleRecord>, MetaError> {
        let mut sql = Sql::new(&format!("{RULE_SELECT} WHERE r.deleted_at IS NULL"));
        sql.push(" AND r.tenant_id = ?", tenant_id);
        sql.page("r.alert_rule_id", page);
        let rows = self.db.fetch(&sql.text, &sql.args).await.map_err(backend)?;
        all(&rows, rule_from)
    }

    async fn enabled_rules(&self) -> Result<Vec<AlertRuleRecord>, MetaError> {
        let rows = self
            .db
            .fetch(
                "SELECT r.*, w.organization_id FROM alert_rules r \
                 JOIN tenants t ON t.tenant_id = r.tenant_id \
                 JOIN workspaces w ON w.workspace_id = t.workspace_id \
                 JOIN organizations o ON o.organization_id = w.organization_id \
                 WHERE r.deleted_at IS NULL AND r.is_enabled = TRUE \
                 AND t.deleted_at IS NULL AND w.deleted_at IS NULL AND o.deleted_at IS NULL \
                 AND t.is_active = TRUE AND w.is_active = TRUE AND o.is_active = TRUE \
                 ORDER BY r.alert_rule_id",
                args![],
            )
            .await
            .map_err(backend)?;
        all(&rows, rule_from)
    }

    async fn update_rule(
        &self,
        alert_rule_id: &str,
        rule: RuleWrite,
        groups: &[String],
    ) -> Result<AlertRuleRecord, MetaError> {
        let at = Utc::now();
        let existing = self
            .rule(alert_rule_id)
            .await?
            .filter(|r| r.deleted_at.is_none())
            .ok_or(MetaError::NotFound("alert rule"))?;
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        tx.execute(
            "UPDATE alert_rules SET name = $2, description = $3, query_type = $4, \
             query_config = $5, condition_config = $6, settings = $7, severity = $8, \
             cooldown_minutes = $9, is_enabled = $10, updated_at = $11 \
             WHERE alert_rule_id = $1 AND deleted_at IS NULL",
            args![
                alert_rule_id,
                rule.name,
                rule.description,
                rule.query_type,
                rule.query_config,
                rule.condition_config,
                rule.settings,
                rule.severity,
                rule.cooldown_minutes,
                rule.is_enabled,
                at
            ],
        )
        .await
        .map_err(backend)?;
        link_groups(tx.as_mut(), alert_rule_id, &existing.tenant_id, groups, at).await?;
        tx.commit().await.map_err(backend)?;
        self.rule(alert_rule_id)
            .await?
            .ok_or(MetaError::NotFound("alert rule"))
    }

    async fn delete_rule(&self, alert_rule_id: &str, at: DateTime<Utc>) -> Result<bool, MetaError> {
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        let n = tx
            .execute(
                "UPDATE alert_rules SET deleted_at = $2, updated_at = $2, is_enabled = FALSE \
                 WHERE alert_rule_id = $1 AND deleted_at IS NULL",
                args![alert_rule_id, at],
            )
            .await
            .map_err(backend)?;
        for stmt in [
            "DELETE FROM alert_rule_notification_groups WHERE alert_rule_id = $1",
            "DELETE FROM alert_rule_state WHERE alert_rule_id = $1",
        ] {
            tx.execute(stmt, args![alert_rule_id])
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(n > 0)
    }

    async fn rule_groups(&self, alert_rule_id: &str) -> Result<Vec<String>, MetaError> {
        let rows = self
            .db
            .fetch(
                "SELECT notification_group_id FROM alert_rule_notification_groups \
                 WHERE alert_rule_id = $1 ORDER BY notification_group_id",
                args![alert_rule_id],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| r.text("notification_group_id"))
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn create_group(
        &self,
        scope: &Scope,
        group: GroupWrite,
    ) -> Result<GroupRecord, MetaError> {
        let at = Utc::now();
        let id = new_id();
        self.db
            .execute(
                "INSERT INTO notification_groups (group_id, workspace_id, tenant_id, name, \
                 description, routing, is_active, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
                args![
                    &id,
                    &scope.workspace_id,
                    &scope.tenant_id,
                    group.name,
                    group.description,
                    group.routing,
                    group.is_active,
                    at
                ],
            )
            .await
            .map_err(conflict("notification group"))?;
        self.group(&id)
            .await?
            .ok_or(MetaError::NotFound("notification group"))
    }

    async fn group(&self, group_id: &str) -> Result<Option<GroupRecord>, MetaError> {
        self.fetch_one_of(
            "SELECT * FROM notification_groups WHERE group_id = $1",
            group_id,
            group_from,
        )
        .await
    }

    async fn groups(&self, tenant_id: &str) -> Result<Vec<GroupRecord>, MetaError> {
        let rows = self
            .db
            .fetch(
                "SELECT * FROM notification_groups WHERE tenant_id = $1 ORDER BY group_id",
                args![tenant_id],
            )
            .await
            .map_err(backend)?;
        all(&rows, group_from)
    }

    async fn update_group(
        &self,
        group_id: &str,
        group: GroupWrite,
    ) -> Result<GroupRecord, MetaError> {
        let n = self
            .db
            .execute(
                "UPDATE notification_groups SET name = $2, description = $3, routing = $4, \
                 is_active = $5, updated_at = $6 WHERE group_id = $1",
                args![
                    group_id,
                    group.name,
                    group.description,
                    group.routing,
                    group.is_active,
                    Utc::now()
                ],
            )
            .await
            .map_err(backend)?;
        if n == 0 {
            return Err(MetaError::NotFound("notification group"));
        }
        self.group(group_id)
            .await?
            .ok_or(MetaError::NotFound("notification group"))
    }

    async fn delete_group(&self, group_id: &str) -> Result<bool, MetaError> {
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        for stmt in [
            "DELETE FROM alert_rule_notification_groups WHERE notification_group_id = $1",
            "DELETE FROM notification_channels WHERE notification_group_id = $1",
            "DELETE FROM notification_group_state WHERE group_id = $1",
        ] {
            tx.execute(stmt, args![group_id]).await.map_err(backend)?;
        }
        let n = tx
            .execute(
                "DELETE FROM notification_groups WHERE group_id = $1",
                args![group_id],
            )
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(n > 0)
    }

    async fn group_rules(&self, group_id: &str) -> Result<Vec<String>, MetaError> {
        let rows = self
            .db
            .fetch(
                "SELECT l.alert_rule_id FROM alert_rule_notification_groups l \
                 JOIN alert_rules r ON r.alert_rule_id = l.alert_rule_id \
                 WHERE l.notification_group_id = $1 AND r.deleted_at IS NULL \
                 ORDER BY l.alert_rule_id",
                args![group_id],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|r| r.text("alert_rule_id"))
            .collect::<Result<_, _>>()
            .map_err(backend)
    }

    async fn create_channel(
        &self,
        scope: &Scope,
        channel_id: &str,
        c: ChannelWrite,
    ) -> Result<ChannelRecord, MetaError> {
        let at = Utc::now();
        let group = self
            .group(&c.notification_group_id)
            .await?
            .filter(|g| g.tenant_id == scope.tenant_id)
            .ok_or_else(|| {
                MetaError::Invalid(format!(
                    "notification group {} not found",
                    c.notification_group_id
                ))
            })?;
        self.db
            .execute(
                "INSERT INTO notification_channels (channel_id, notification_group_id, \
                 workspace_id, tenant_id, name, channel_type, plugin_id, config_encrypted, \
                 config_keys, is_active, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
                args![
                    channel_id,
                    &group.group_id,
                    &scope.workspace_id,
                    &scope.tenant_id,
                    c.name,
                    c.channel_type,
                    c.plugin_id,
                    c.config_encrypted,
                    c.config_keys,
                    c.is_active,
                    at
                ],
            )
            .await
            .map_err(conflict("notification channel"))?;
        self.channel(channel_id)
            .await?
            .ok_or(MetaError::NotFound("notification channel"))
    }

    async fn channel(&self, channel_id: &str) -> Result<Option<ChannelRecord>, MetaError> {
        self.fetch_one_of(
            "SELECT * FROM notification_channels WHERE channel_id = $1",
            channel_id,
            channel_from,
        )
        .await
    }

    async fn channels(
        &self,
        tenant_id: &str,
        group_id: Option<&str>,
    ) -> Result<Vec<ChannelRecord>, MetaError> {
        let mut sql = Sql::new("SELECT * FROM notification_channels WHERE 1 = 1");
        sql.push(" AND tenant_id = ?", tenant_id);
        if let Some(g) = group_id {
            sql.push(" AND notification_group_id = ?", g);
        }
        let rows = self
            .db
            .fetch(&format!("{} ORDER BY channel_id", sql.text), &sql.args)
            .await
            .map_err(backend)?;
        all(&rows, channel_from)
    }

    async fn update_channel(
        &self,
        channel_id: &str,
        c: ChannelWrite,
    ) -> Result<ChannelRecord, MetaError> {
        let existing = self
            .channel(channel_id)
            .await?
            .ok_or(MetaError::NotFound("notification channel"))?;
        if c.notification_group_id != existing.notification_group_id {
            self.group(&c.notification_group_id)
                .await?
                .filter(|g| g.tenant_id == existing.tenant_id)
                .ok_or_else(|| {
                    MetaError::Invalid(format!(
                        "notification group {} not found",
                        c.notification_group_id
                    ))
                })?;
        }
        self.db
            .execute(
                "UPDATE notification_channels SET notification_group_id = $2, name = $3, \
                 channel_type = $4, plugin_id = $5, config_encrypted = $6, config_keys = $7, \
                 is_active = $8, updated_at = $9 WHERE channel_id = $1",
                args![
                    channel_id,
                    c.notification_group_id,
                    c.name,
                    c.channel_type,
                    c.plugin_id,
                    c.config_encrypted,
                    c.config_keys,
                    c.is_active,
                    Utc::now()
                ],
            )
            .await
            .map_err(backend)?;
        self.channel(channel_id)
            .await?
            .ok_or(MetaError::NotFound("notification channel"))
    }

    async fn delete_channel(&self, channel_id: &str) -> Result<bool, MetaError> {
        let n = self
            .db
            .execute(
                "DELETE FROM notification_channels WHERE channel_id = $1",
                args![channel_id],
            )
            .await
            .map_err(backend)?;
        Ok(n > 0)
    }

    async fn create_silence(
        &self,
        scope: &Scope,
        s: NewSilence,
    ) -> Result<SilenceRecord, MetaError> {
        let at = Utc::now();
        let id = new_id();
        self.db
            .execute(
                "INSERT INTO silences (silence_id, workspace_id, tenant_id, matchers, starts_at, \
                 ends_at, comment, created_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
                args![
                    &id,
                    &scope.workspace_id,
                    &scope.tenant_id,
                    s.matchers,
                    s.starts_at,
                    s.ends_at,
                    s.comment,
                    s.created_by,
                    at
                ],
            )
            .await
            .map_err(backend)?;
        self.silence(&id)
            .await?
            .ok_or(MetaError::NotFound("silence"))
    }

    async fn silence(&self, silence_id: &str) -> Result<Option<SilenceRecord>, MetaError> {
        self.fetch_one_of(
            "SELECT * FROM silences WHERE silence_id = $1",
            silence_id,
            silence_from,
        )
        .await
    }

    async fn silences(
        &self,
        tenant_id: &str,
        active_at: Option<DateTime<Utc>>,
    ) -> Result<Vec<SilenceRecord>, MetaError> {
        let mut sql = Sql::new("SELECT * FROM silences WHERE 1 = 1");
        sql.push(" AND tenant_id = ?", tenant_id);
        if let Some(t) = active_at {
            sql.push(" AND ends_at > ?", t);
        }
        let rows = self
            .db
            .fetch(
                &format!("{} ORDER BY ends_at DESC, silence_id", sql.text),
                &sql.args,
            )
            .await
            .map_err(backend)?;
        all(&rows, silence_from)
    }

    async fn expire_silence(
        &self,
        silence_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<SilenceRecord>, MetaError> {
        self.db
            .execute(
                "UPDATE silences SET ends_at = $2, updated_at = $2 \
                 WHERE silence_id = $1 AND ends_at > $2",
                args![silence_id, at],
            )
            .await
            .map_err(backend)?;
        self.silence(silence_id).await
    }

    async fn rule_state(&self, alert_rule_id: &str) -> Result<Option<RuleStateRecord>, MetaError> {
        self.fetch_one_of(
            "SELECT * FROM alert_rule_state WHERE alert_rule_id = $1",
            alert_rule_id,
            state_from,
        )
        .await
    }

    async fn put_rule_states(&self, states: &[RuleStateRecord]) -> Result<(), MetaError> {
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        for s in states {
            tx.execute(
                "INSERT INTO alert_rule_state (alert_rule_id, instances, plugin_state, \
                 last_evaluated_at, last_error, evaluations, skipped_ticks, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (alert_rule_id) DO UPDATE SET instances = excluded.instances, \
                 plugin_state = excluded.plugin_state, last_evaluated_at = excluded.last_evaluated_at, \
                 last_error = excluded.last_error, evaluations = excluded.evaluations, \
                 skipped_ticks = excluded.skipped_ticks, updated_at = excluded.updated_at",
                args![
                    &s.alert_rule_id,
                    s.instances.as_str(),
                    s.plugin_state.clone(),
                    s.last_evaluated_at,
                    s.last_error.as_deref(),
                    s.evaluations,
                    s.skipped_ticks,
                    s.updated_at
                ],
            )
            .await
            .map_err(backend)?;
            tx.execute(
                "UPDATE alert_rules SET last_evaluated_at = $2 WHERE alert_rule_id = $1",
                args![&s.alert_rule_id, s.last_evaluated_at],
            )
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(())
    }

    async fn record_attempt(
        &self,
        attempts: &[AttemptRecord],
        step: OutboxStep<'_>,
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        for a in attempts {
            tx.execute(
                "INSERT INTO notification_attempts (attempt_id, channel_id, \
                 notification_group_id, workspace_id, tenant_id, group_key, idempotency_key, \
                 attempt, outcome, message, alerts, status, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                args![
                    &a.attempt_id,
                    &a.channel_id,
                    &a.notification_group_id,
                    &a.workspace_id,
                    &a.tenant_id,
                    &a.group_key,
                    &a.idempotency_key,
                    a.attempt,
                    &a.outcome,
                    &a.message,
                    a.alerts,
                    &a.status,
                    a.created_at
                ],
            )
            .await
            .map_err(backend)?;
        }
        match step {
            OutboxStep::Retry {
                outbox_id,
                attempts,
                next_attempt_at,
            } => {
                tx.execute(
                    "UPDATE notification_outbox SET attempts = $2, next_attempt_at = $3 \
                     WHERE outbox_id = $1",
                    args![outbox_id, attempts, next_attempt_at],
                )
                .await
                .map_err(backend)?;
            }
            OutboxStep::Done { outbox_id } => {
                tx.execute(
                    "DELETE FROM notification_outbox WHERE outbox_id = $1",
                    args![outbox_id],
                )
                .await
                .map_err(backend)?;
            }
        }
        tx.commit().await.map_err(backend)
    }

    async fn attempts(
        &self,
        channel_id: &str,
        limit: u32,
    ) -> Result<Vec<AttemptRecord>, MetaError> {
        let rows = self
            .db
            .fetch(
                "SELECT * FROM notification_attempts WHERE channel_id = $1 \
                 ORDER BY created_at DESC, attempt DESC LIMIT $2",
                args![channel_id, i64::from(limit.clamp(1, 1000))],
            )
            .await
            .map_err(backend)?;
        all(&rows, attempt_from)
    }

    async fn group_state(&self, group_id: &str) -> Result<Option<String>, MetaError> {
        self.db
            .fetch_one(
                "SELECT dispatcher FROM notification_group_state WHERE group_id = $1",
                args![group_id],
            )
            .await
            .map_err(backend)?
            .map(|r| r.text("dispatcher"))
            .transpose()
            .map_err(backend)
    }

    async fn put_group_state(
        &self,
        group_id: &str,
        dispatcher: &str,
        deliveries: &[OutboxRecord],
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        tx.execute(
            "INSERT INTO notification_group_state (group_id, dispatcher, updated_at) \
             VALUES ($1, $2, $3) ON CONFLICT (group_id) DO UPDATE SET \
             dispatcher = excluded.dispatcher, updated_at = excluded.updated_at",
            args![group_id, dispatcher, Utc::now()],
        )
        .await
        .map_err(backend)?;
        for d in deliveries {
            tx.execute(
                "INSERT INTO notification_outbox (outbox_id, channel_id, notification_group_id, \
                 workspace_id, tenant_id, notification, attempts, created_at, next_attempt_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                args![
                    &d.outbox_id,
                    &d.channel_id,
                    &d.notification_group_id,
                    &d.workspace_id,
                    &d.tenant_id,
                    &d.notification,
                    d.attempts,
                    d.created_at,
                    d.next_attempt_at
                ],
            )
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn outbox(&self) -> Result<Vec<OutboxRecord>, MetaError> {
        let rows = self
            .db
            .fetch(
                "SELECT * FROM notification_outbox ORDER BY created_at, outbox_id",
                args![],
            )
            .await
            .map_err(backend)?;
        all(&rows, outbox_from)
    }

    async fn outbox_done(&self, outbox_id: &str) -> Result<(), MetaError> {
        self.db
            .execute(
                "DELETE FROM notification_outbox WHERE outbox_id = $1",
                args![outbox_id],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }
}
