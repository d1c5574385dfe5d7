//! Alerting rows on both backends: rules with their group links, groups, channels, silences and
//! each rule's evaluation state; what one tenant cannot reach from another; purge.

use chrono::Utc;
use storage::{
    AttemptRecord, ChannelWrite, GroupWrite, MetaError, NewSilence, OutboxRecord, OutboxStep, Page,
    RuleStateRecord, RuleWrite,
};

use super::{admin_of, backends};

fn rule(name: &str) -> RuleWrite {
    RuleWrite {
        name: name.into(),
        description: "d".into(),
        query_type: "metric".into(),
        query_config: r#"{"queries":[{"name":"A","sql":"SELECT 1","range":"5m"}]}"#.into(),
        condition_config: r#"{"plugin":"builtin-threshold","config":{}}"#.into(),
        settings: r#"{"for":"5m"}"#.into(),
        severity: "critical".into(),
        cooldown_minutes: 10,
        is_enabled: true,
    }
}

fn group(name: &str) -> GroupWrite {
    GroupWrite {
        name: name.into(),
        description: String::new(),
        routing: r#"{"group_by":["alertname"]}"#.into(),
        is_active: true,
    }
}

fn page() -> Page {
    Page {
        limit: 100,
        after: None,
        include_deleted: false,
    }
}

#[tokio::test]
async fn rules_groups_and_links_round_trip() {
    for b in backends().await {
        let (s, a) = (b.store.as_ref(), b.alerts.as_ref());
        let admin = admin_of(s).await;
        let scope = admin.scope.clone();
        let g1 = a
            .create_group(&scope, group("oncall"))
            .await
            .expect("group");
        let g2 = a.create_group(&scope, group("email")).await.expect("group");
        let r = a
            .create_rule(
                &scope,
                rule("cpu"),
                std::slice::from_ref(&g1.group_id),
                Some(&admin.user_id),
            )
            .await
            .expect("rule");
        assert_eq!(
            (r.tenant_id.as_str(), r.cooldown_minutes, r.is_enabled),
            (scope.tenant_id.as_str(), 10, true),
            "{}",
            b.name
        );
        assert_eq!(
            a.rule_groups(&r.alert_rule_id).await.expect("links"),
            vec![g1.group_id.clone()]
        );
        assert_eq!(
            a.group_rules(&g1.group_id).await.expect("links"),
            vec![r.alert_rule_id.clone()]
        );

        // A full update replaces the fields and the links.
        let mut w = rule("cpu high");
        w.is_enabled = false;
        let u = a
            .update_rule(
                &r.alert_rule_id,
                w,
                &[g2.group_id.clone(), g2.group_id.clone()],
            )
            .await
            .expect("update");
        assert_eq!(
            (u.name.as_str(), u.is_enabled),
            ("cpu high", false),
            "{}",
            b.name
        );
        assert_eq!(
            a.rule_groups(&r.alert_rule_id).await.expect("links"),
            vec![g2.group_id.clone()]
        );
        assert!(
            a.enabled_rules().await.expect("enabled").is_empty(),
            "{}",
            b.name
        );

        // A group of no one's tenant cannot be linked.
        let bad = a
            .create_rule(&scope, rule("x"), &["nope".into()], None)
            .await;
        assert!(
            matches!(bad, Err(MetaError::Invalid(_))),
            "{}: {bad:?}",
            b.name
        );
        assert_eq!(
            a.rules(&scope.tenant_id, &page())
                .await
                .expect("list")
                .len(),
            1,
            "{}",
            b.name
        );

        // Evaluation state survives (this is what a restart reads back).
        let at = Utc::now();
        let state = RuleStateRecord {
            alert_rule_id: r.alert_rule_id.clone(),
            instances: r#"{"instances":{}}"#.into(),
            plugin_state: Some(vec![1, 2, 3]),
            last_evaluated_at: Some(at),
            last_error: Some("query failed".into()),
            evaluations: 7,
            skipped_ticks: 1,
            updated_at: at,
        };
        a.put_rule_state(state.clone()).await.expect("put");
        let mut again = state.clone();
        again.evaluations = 8;
        again.plugin_state = None;
        a.put_rule_state(again).await.expect("upsert");
        let got = a
            .rule_state(&r.alert_rule_id)
            .await
            .expect("get")
            .expect("some");
        assert_eq!(
            (got.evaluations, got.plugin_state, got.skipped_ticks),
            (8, None, 1),
            "{}",
            b.name
        );
        let rr = a.rule(&r.alert_rule_id).await.expect("get").expect("some");
        assert!(rr.last_evaluated_at.is_some(), "{}", b.name);

        // Delete: soft for the rule, its links and state go.
        assert!(
            a.delete_rule(&r.alert_rule_id, Utc::now())
                .await
                .expect("delete")
        );
        assert!(
            !a.delete_rule(&r.alert_rule_id, Utc::now())
                .await
                .expect("again")
        );
        assert!(
            a.rule(&r.alert_rule_id)
                .await
                .expect("get")
                .expect("kept")
                .deleted_at
                .is_some()
        );
        assert!(
            a.rules(&scope.tenant_id, &page())
                .await
                .expect("list")
                .is_empty()
        );
        assert!(a.group_rules(&g2.group_id).await.expect("links").is_empty());
        assert!(a.rule_state(&r.alert_rule_id).await.expect("get").is_none());
    }
}

#[tokio::test]
async fn channels_keep_their_sealed_config_and_go_with_their_group() {
    for b in backends().await {
        let (s, a) = (b.store.as_ref(), b.alerts.as_ref());
        let admin = admin_of(s).await;
        let scope = admin.scope.clone();
        let g = a
            .create_group(&scope, group("oncall"))
            .await
            .expect("group");
        let write = |name: &str, group_id: &str| ChannelWrite {
            notification_group_id: group_id.into(),
            name: name.into(),
            channel_type: "slack".into(),
            plugin_id: "builtin-slack".into(),
            config_encrypted: "v1.sealed".into(),
            config_keys: r#"["webhook_url"]"#.into(),
            is_active: true,
        };
        let c = a
            .create_channel(&scope, "chan-1", write("ops", &g.group_id))
            .await
            .expect("channel");
        assert_eq!(
            (c.channel_id.as_str(), c.config_encrypted.as_str()),
            ("chan-1", "v1.sealed")
        );
        let dup = a
            .create_channel(&scope, "chan-1", write("ops", &g.group_id))
            .await;
        assert!(
            matches!(dup, Err(MetaError::Conflict(_))),
            "{}: {dup:?}",
            b.name
        );
        let nowhere = a
            .create_channel(&scope, "chan-2", write("ops", "no-group"))
            .await;
        assert!(matches!(nowhere, Err(MetaError::Invalid(_))), "{}", b.name);
        let mut w = write("ops-2", &g.group_id);
        w.is_active = false;
        let u = a.update_channel("chan-1", w).await.expect("update");
        assert_eq!((u.name.as_str(), u.is_active), ("ops-2", false));
        assert_eq!(
            a.channels(&scope.tenant_id, Some(&g.group_id))
                .await
                .expect("list")
                .len(),
            1
        );
        assert!(
            a.channels("other-tenant", None)
                .await
                .expect("list")
                .is_empty()
        );
        // Deleting the group takes its channels.
        assert!(a.delete_group(&g.group_id).await.expect("delete"));
        assert!(
            a.channel("chan-1").await.expect("get").is_none(),
            "{}",
            b.name
        );
        assert!(a.groups(&scope.tenant_id).await.expect("list").is_empty());
    }
}

fn attempt(id: &str, n: i64, outcome: &str) -> AttemptRecord {
    AttemptRecord {
        attempt_id: id.into(),
        channel_id: "chan-1".into(),
        notification_group_id: "group-1".into(),
        workspace_id: "ws".into(),
        tenant_id: "tn".into(),
        group_key: "{alertname=\"A\"}".into(),
        idempotency_key: "{alertname=\"A\"}@1".into(),
        attempt: n,
        outcome: outcome.into(),
        message: String::new(),
        alerts: 1,
        status: "firing".into(),
        created_at: Utc::now(),
    }
}

/// A delivery's attempt records and its outbox row move in one step: after a failed write
/// neither moved, so a delivery resumed from the outbox counts its attempts as recorded.
#[tokio::test]
async fn the_outbox_moves_with_each_recorded_attempt() {
    for b in backends().await {
        let a = b.alerts.as_ref();
        let at =
            chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("now");
        let row = OutboxRecord {
            outbox_id: "out-1".into(),
            channel_id: "chan-1".into(),
            notification_group_id: "group-1".into(),
            workspace_id: "ws".into(),
            tenant_id: "tn".into(),
            notification: "{}".into(),
            attempts: 0,
            created_at: at,
            next_attempt_at: at,
        };
        a.put_group_state("group-1", "{}", std::slice::from_ref(&row))
            .await
            .expect("outbox");
        let due = at + chrono::Duration::seconds(30);
        let retry = OutboxStep::Retry {
            outbox_id: "out-1",
            attempts: 1,
            next_attempt_at: due,
        };
        a.record_attempt(&[attempt("a1", 1, "transient")], retry)
            .await
            .expect("attempt");
        let pending = a.outbox().await.expect("outbox");
        assert_eq!(pending.len(), 1, "{}", b.name);
        assert_eq!(
            (pending[0].attempts, pending[0].next_attempt_at),
            (1, due),
            "{}",
            b.name
        );

        // The second attempt's write fails (its id is taken): the outbox did not move either.
        let later = OutboxStep::Retry {
            outbox_id: "out-1",
            attempts: 2,
            next_attempt_at: due + chrono::Duration::seconds(30),
        };
        let failed = a
            .record_attempt(
                &[attempt("a2", 2, "transient"), attempt("a1", 2, "x")],
                later,
            )
            .await;
        assert!(failed.is_err(), "{}", b.name);
        assert_eq!(
            a.outbox().await.expect("outbox")[0].attempts,
            1,
            "{}",
            b.name
        );
        assert_eq!(
            a.attempts("chan-1", 10).await.expect("attempts").len(),
            1,
            "{}",
            b.name
        );

        // Giving up writes both records and ends the delivery.
        a.record_attempt(
            &[attempt("a2", 2, "transient"), attempt("a3", 2, "gave_up")],
            OutboxStep::Done { outbox_id: "out-1" },
        )
        .await
        .expect("attempt");
        assert!(a.outbox().await.expect("outbox").is_empty(), "{}", b.name);
        let list = a.attempts("chan-1", 10).await.expect("attempts");
        let mut outcomes: Vec<(i64, &str)> = list
            .iter()
            .map(|r| (r.attempt, r.outcome.as_str()))
            .collect();
        outcomes.sort_unstable();
        assert_eq!(
            outcomes,
            [(1, "transient"), (2, "gave_up"), (2, "transient")],
            "{}",
            b.name
        );
    }
}

#[tokio::test]
async fn silences_expire_and_list_by_activity() {
    for b in backends().await {
        let (s, a) = (b.store.as_ref(), b.alerts.as_ref());
        let admin = admin_of(s).await;
        let scope = admin.scope.clone();
        let now = Utc::now();
        let new = |hours: i64| NewSilence {
            matchers: r#"["service=\"api\""]"#.into(),
            starts_at: now,
            ends_at: now + chrono::Duration::hours(hours),
            comment: "deploy".into(),
            created_by: Some(admin.user_id.clone()),
        };
        let s1 = a.create_silence(&scope, new(2)).await.expect("silence");
        let _s2 = a.create_silence(&scope, new(4)).await.expect("silence");
        assert_eq!(
            a.silences(&scope.tenant_id, Some(now))
                .await
                .expect("list")
                .len(),
            2
        );
        let ended = a
            .expire_silence(&s1.silence_id, now + chrono::Duration::minutes(1))
            .await
            .expect("expire")
            .expect("found");
        assert_eq!(
            ended.ends_at.timestamp(),
            (now + chrono::Duration::minutes(1)).timestamp()
        );
        let active = a
            .silences(&scope.tenant_id, Some(now + chrono::Duration::minutes(2)))
            .await
            .expect("list");
        assert_eq!(active.len(), 1, "{}", b.name);
        assert_eq!(
            a.silences(&scope.tenant_id, None).await.expect("all").len(),
            2
        );
        // Expiring an ended silence changes nothing.
        let again = a
            .expire_silence(&s1.silence_id, now + chrono::Duration::minutes(30))
            .await
            .expect("expire")
            .expect("found");
        assert_eq!(again.ends_at, ended.ends_at, "{}", b.name);
    }
}
