//! The dashboards port: dashboards (soft-deleted; public ones found by the hash of their share
//! token), their widgets, and templates (shipped with the server, or a workspace's own). JSON
//! columns are text the caller interprets.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use model::Scope;

use crate::{MetaError, Page};

#[derive(Debug, Clone, PartialEq)]
pub struct DashboardRecord {
    pub dashboard_id: String,
    pub workspace_id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: String,
    pub layout_config: String,
    pub variables: String,
    pub is_public: bool,
    pub view_count: i64,
    pub template_id: Option<String>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// What a create or a full update writes.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardWrite {
    pub name: String,
    pub description: String,
    pub layout_config: String,
    pub variables: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WidgetRecord {
    pub widget_id: String,
    pub dashboard_id: String,
    pub title: String,
    pub widget_type: String,
    pub query_config: String,
    pub visualization_config: String,
    pub position_config: String,
    pub refresh_interval: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WidgetWrite {
    pub title: String,
    pub widget_type: String,
    pub query_config: String,
    pub visualization_config: String,
    pub position_config: String,
    pub refresh_interval: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateRecord {
    pub template_id: String,
    /// `None` for the templates shipped with the server.
    pub workspace_id: Option<String>,
    pub name: String,
    pub description: String,
    pub category: String,
    pub template_config: String,
    pub is_default: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateWrite {
    pub name: String,
    pub description: String,
    pub category: String,
    pub template_config: String,
    pub is_default: bool,
}

#[async_trait]
pub trait DashboardStore: Send + Sync + 'static {
    /// A new dashboard in `scope`'s tenant with its widgets, in one transaction.
    async fn create_dashboard(
        &self,
        scope: &Scope,
        dashboard: DashboardWrite,
        widgets: Vec<WidgetWrite>,
        template_id: Option<&str>,
        created_by: Option<&str>,
    ) -> Result<DashboardRecord, MetaError>;
    /// A dashboard by id, deleted or not.
    async fn dashboard(&self, dashboard_id: &str) -> Result<Option<DashboardRecord>, MetaError>;
    /// A tenant's dashboards that are not deleted, by name then id.
    async fn dashboards(
        &self,
        tenant_id: &str,
        page: &Page,
    ) -> Result<Vec<DashboardRecord>, MetaError>;
    async fn update_dashboard(
        &self,
        dashboard_id: &str,
        dashboard: DashboardWrite,
    ) -> Result<DashboardRecord, MetaError>;
    /// Soft-deletes a dashboard (and stops sharing it); false if there was none.
    async fn delete_dashboard(
        &self,
        dashboard_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, MetaError>;
    /// Makes a dashboard public under the hash of a new share token, or private (`None`).
    async fn set_share(
        &self,
        dashboard_id: &str,
        share_token_hash: Option<&str>,
    ) -> Result<DashboardRecord, MetaError>;
    /// The public, not deleted dashboard shared under this token hash.
    async fn shared_dashboard(
        &self,
        share_token_hash: &str,
    ) -> Result<Option<DashboardRecord>, MetaError>;
    /// Counts one view.
    async fn count_view(&self, dashboard_id: &str) -> Result<(), MetaError>;

    async fn create_widget(
        &self,
        dashboard_id: &str,
        widget: WidgetWrite,
    ) -> Result<WidgetRecord, MetaError>;
    async fn widget(&self, widget_id: &str) -> Result<Option<WidgetRecord>, MetaError>;
    /// A dashboard's widgets, by position then creation.
    async fn widgets(&self, dashboard_id: &str) -> Result<Vec<WidgetRecord>, MetaError>;
    async fn update_widget(
        &self,
        widget_id: &str,
        widget: WidgetWrite,
    ) -> Result<WidgetRecord, MetaError>;
    async fn delete_widget(&self, widget_id: &str) -> Result<bool, MetaError>;

    /// Writes a shipped template (no workspace) under a fixed id, replacing an older version.
    async fn put_shipped_template(
        &self,
        template_id: &str,
        template: TemplateWrite,
    ) -> Result<(), MetaError>;
    /// A new template of a workspace.
    async fn create_template(
        &self,
        workspace_id: &str,
        template: TemplateWrite,
    ) -> Result<TemplateRecord, MetaError>;
    async fn template(&self, template_id: &str) -> Result<Option<TemplateRecord>, MetaError>;
    /// The shipped templates and the workspace's own, by category then name.
    async fn templates(&self, workspace_id: &str) -> Result<Vec<TemplateRecord>, MetaError>;
    async fn delete_template(&self, template_id: &str) -> Result<bool, MetaError>;
}
