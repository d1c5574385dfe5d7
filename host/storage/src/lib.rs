//! The storage ports: what the rest of the host needs from a telemetry store and from a
//! metadata store, and nothing about how either is built.
//!
//! Adapters live in their own crates (`storage-embedded`, `storage-clickhouse`, `storage-sqlite`,
//! `storage-postgres`); only the `server` crate names them.

mod alerting;
mod dashboards;
mod meta;
mod telemetry;

pub use alerting::{
    AlertRuleRecord, AlertStore, AttemptRecord, ChannelRecord, ChannelWrite, GroupRecord,
    GroupWrite, NewSilence, OutboxRecord, OutboxStep, RuleStateRecord, RuleWrite, SilenceRecord,
};
pub use dashboards::{
    DashboardRecord, DashboardStore, DashboardWrite, TemplateRecord, TemplateWrite, WidgetRecord,
    WidgetWrite,
};
pub use meta::{
    ACTIONS, ApiKeyRecord, ApiKeyStatus, ApiKeyUsage, ConsumedToken, Entity, EntityPatch,
    InvitationRecord, MetaError, MetaStore, MfaRecord, NewApiKey, NewInvitation, NewOrganization,
    NewPlugin, NewSession, NewTenant, NewUser, OneTimeKind, OrganizationRecord, Page, PluginRecord,
    PurgeReport, RESOURCES, RefreshOutcome, RegionRecord, RoleGrant, RoleRecord, RoleType,
    SessionRecord, TenantRecord, UserPatch, UserRecord, Within, WorkspaceRecord, is_permission,
};
pub use telemetry::{
    DedupWindow, RawExport, Reconvert, StoreError, StoreStats, TableStats, TelemetryStore,
    rows_dedup_token,
};
