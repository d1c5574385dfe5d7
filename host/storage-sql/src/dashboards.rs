//! [`DashboardStore`] over any [`Db`]: dashboards, widgets, templates.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use model::Scope;
use storage::{
    DashboardRecord, DashboardStore, DashboardWrite, MetaError, Page, TemplateRecord,
    TemplateWrite, WidgetRecord, WidgetWrite,
};

use crate::alerting::all;
use crate::args;
use crate::db::{DbError, Row, Tx};
use crate::store::{Sql, SqlMetaStore, backend, new_id};

fn dashboard_from(r: &Row) -> Result<DashboardRecord, DbError> {
    Ok(DashboardRecord {
        dashboard_id: r.text("dashboard_id")?,
        workspace_id: r.text("workspace_id")?,
        tenant_id: r.text("tenant_id")?,
        name: r.text("name")?,
        description: r.text("description")?,
        layout_config: r.text("layout_config")?,
        variables: r.text("variables")?,
        is_public: r.bool("is_public")?,
        view_count: r.int("view_count")?,
        template_id: r.opt_text("template_id")?,
        created_by: r.opt_text("created_by")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        deleted_at: r.opt_time("deleted_at")?,
    })
}

fn widget_from(r: &Row) -> Result<WidgetRecord, DbError> {
    Ok(WidgetRecord {
        widget_id: r.text("widget_id")?,
        dashboard_id: r.text("dashboard_id")?,
        title: r.text("title")?,
        widget_type: r.text("widget_type")?,
        query_config: r.text("query_config")?,
        visualization_config: r.text("visualization_config")?,
        position_config: r.text("position_config")?,
        refresh_interval: r.int("refresh_interval")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn template_from(r: &Row) -> Result<TemplateRecord, DbError> {
    Ok(TemplateRecord {
        template_id: r.text("template_id")?,
        workspace_id: r.opt_text("workspace_id")?,
        name: r.text("name")?,
        description: r.text("description")?,
        category: r.text("category")?,
        template_config: r.text("template_config")?,
        is_default: r.bool("is_default")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

async fn insert_widget(
    tx: &mut dyn Tx,
    id: &str,
    dashboard_id: &str,
    w: WidgetWrite,
    at: DateTime<Utc>,
) -> Result<(), MetaError> {
    tx.execute(
        "INSERT INTO widgets (widget_id, dashboard_id, title, widget_type, query_config, \
         visualization_config, position_config, refresh_interval, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        args![
            id,
            dashboard_id,
            w.title,
            w.widget_type,
            w.query_config,
            w.visualization_config,
            w.position_config,
            w.refresh_interval,
            at
        ],
    )
    .await
    .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl DashboardStore for SqlMetaStore {
    async fn create_dashboard(
        &self,
        scope: &Scope,
        d: DashboardWrite,
        widgets: Vec<WidgetWrite>,
        template_id: Option<&str>,
        created_by: Option<&str>,
    ) -> Result<DashboardRecord, MetaError> {
        let at = Utc::now();
        let id = new_id();
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        tx.execute(
            "INSERT INTO dashboards (dashboard_id, workspace_id, tenant_id, name, description, \
             layout_config, variables, template_id, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
            args![
                &id,
                &scope.workspace_id,
                &scope.tenant_id,
                d.name,
                d.description,
                d.layout_config,
                d.variables,
                template_id,
                created_by,
                at
            ],
        )
        .await
        .map_err(backend)?;
        for w in widgets {
            insert_widget(tx.as_mut(), &new_id(), &id, w, at).await?;
        }
        tx.commit().await.map_err(backend)?;
        self.dashboard(&id)
            .await?
            .ok_or(MetaError::NotFound("dashboard"))
    }

    async fn dashboard(&self, dashboard_id: &str) -> Result<Option<DashboardRecord>, MetaError> {
        self.fetch_one_of(
            "SELECT * FROM dashboards WHERE dashboard_id = $1",
            dashboard_id,
            dashboard_from,
        )
        .await
    }

    async fn dashboards(
        &self,
        tenant_id: &str,
        page: &Page,
    ) -> Result<Vec<DashboardRecord>, MetaError> {
        let mut sql = Sql::new("SELECT * FROM dashboards WHERE deleted_at IS NULL");
        sql.push(" AND tenant_id = ?", tenant_id);
        sql.page("dashboard_id", page);
        let rows = self.db.fetch(&sql.text, &sql.args).await.map_err(backend)?;
        all(&rows, dashboard_from)
    }

    async fn update_dashboard(
        &self,
        dashboard_id: &str,
        d: DashboardWrite,
    ) -> Result<DashboardRecord, MetaError> {
        self.db
            .execute(
                "UPDATE dashboards SET name = $2, description = $3, layout_config = $4, \
                 variables = $5, updated_at = $6 WHERE dashboard_id = $1 AND deleted_at IS NULL",
                args![
                    dashboard_id,
                    d.name,
                    d.description,
                    d.layout_config,
                    d.variables,
                    Utc::now()
                ],
            )
            .await
            .map_err(backend)?;
        self.dashboard(dashboard_id)
            .await?
            .ok_or(MetaError::NotFound("dashboard"))
    }

    async fn delete_dashboard(
        &self,
        dashboard_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, MetaError> {
        let n = self
            .db
            .execute(
                "UPDATE dashboards SET deleted_at = $2, updated_at = $2, is_public = FALSE, \
                 share_token_hash = NULL WHERE dashboard_id = $1 AND deleted_at IS NULL",
                args![dashboard_id, at],
            )
            .await
            .map_err(backend)?;
        Ok(n > 0)
    }

    async fn set_share(
        &self,
        dashboard_id: &str,
        share_token_hash: Option<&str>,
    ) -> Result<DashboardRecord, MetaError> {
        self.db
            .execute(
                "UPDATE dashboards SET is_public = $2, share_token_hash = $3, updated_at = $4 \
                 WHERE dashboard_id = $1 AND deleted_at IS NULL",
                args![
                    dashboard_id,
                    share_token_hash.is_some(),
                    share_token_hash,
                    Utc::now()
                ],
            )
            .await
            .map_err(backend)?;
        self.dashboard(dashboard_id)
            .await?
            .ok_or(MetaError::NotFound("dashboard"))
    }

    async fn shared_dashboard(
        &self,
        share_token_hash: &str,
    ) -> Result<Option<DashboardRecord>, MetaError> {
        self.fetch_one_of(
            "SELECT d.* FROM dashboards d \
             JOIN tenants t ON t.tenant_id = d.tenant_id \
             JOIN workspaces w ON w.workspace_id = t.workspace_id \
             JOIN organizations o ON o.organization_id = w.organization_id \
             WHERE d.share_token_hash = $1 AND d.is_public = TRUE AND d.deleted_at IS NULL \
             AND t.deleted_at IS NULL AND w.deleted_at IS NULL AND o.deleted_at IS NULL \
             AND t.is_active = TRUE AND w.is_active = TRUE AND o.is_active = TRUE",
            share_token_hash,
            dashboard_from,
        )
        .await
    }

    async fn count_view(&self, dashboard_id: &str) -> Result<(), MetaError> {
        self.db
            .execute(
                "UPDATE dashboards SET view_count = view_count + 1 WHERE dashboard_id = $1",
                args![dashboard_id],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn create_widget(
        &self,
        dashboard_id: &str,
        w: WidgetWrite,
    ) -> Result<WidgetRecord, MetaError> {
        let id = new_id();
        let mut tx = self.db.begin(false).await.map_err(backend)?;
        insert_widget(tx.as_mut(), &id, dashboard_id, w, Utc::now()).await?;
        tx.commit().await.map_err(backend)?;
        self.widget(&id).await?.ok_or(MetaError::NotFound("widget"))
    }

    async fn widget(&self, widget_id: &str) -> Result<Option<WidgetRecord>, MetaError> {
        self.fetch_one_of(
            "SELECT * FROM widgets WHERE widget_id = $1",
            widget_id,
            widget_from,
        )
        .await
    }

    async fn widgets(&self, dashboard_id: &str) -> Result<Vec<WidgetRecord>, MetaError> {
        let rows = self
            .db
            .fetch(
                "SELECT * FROM widgets WHERE dashboard_id = $1 ORDER BY created_at, widget_id",
                args![dashboard_id],
            )
            .await
            .map_err(backend)?;
        all(&rows, widget_from)
    }

    async fn update_widget(
        &self,
        widget_id: &str,
        w: WidgetWrite,
    ) -> Result<WidgetRecord, MetaError> {
        self.db
            .execute(
                "UPDATE widgets SET title = $2, widget_type = $3, query_config = $4, \
                 visualization_config = $5, position_config = $6, refresh_interval = $7, \
                 updated_at = $8 WHERE widget_id = $1",
                args![
                    widget_id,
                    w.title,
                    w.widget_type,
                    w.query_config,
                    w.visualization_config,
                    w.position_config,
                    w.refresh_interval,
                    Utc::now()
                ],
            )
            .await
            .map_err(backend)?;
        self.widget(widget_id)
            .await?
            .ok_or(MetaError::NotFound("widget"))
    }

    async fn delete_widget(&self, widget_id: &str) -> Result<bool, MetaError> {
        let n = self
            .db
            .execute("DELETE FROM widgets WHERE widget_id = $1", args![widget_id])
            .await
            .map_err(backend)?;
        Ok(n > 0)
    }

    async fn put_shipped_template(
        &self,
        template_id: &str,
        t: TemplateWrite,
    ) -> Result<(), MetaError> {
        let at = Utc::now();
        self.db
            .execute(
                "INSERT INTO dashboard_templates (template_id, workspace_id, name, description, \
                 category, template_config, is_default, created_at, updated_at) \
                 VALUES ($1, NULL, $2, $3, $4, $5, $6, $7, $7) \
                 ON CONFLICT (template_id) DO UPDATE SET name = excluded.name, \
                 description = excluded.description, category = excluded.category, \
                 template_config = excluded.template_config, is_default = excluded.is_default, \
                 updated_at = excluded.updated_at",
                args![
                    template_id,
                    t.name,
                    t.description,
                    t.category,
                    t.template_config,
                    t.is_default,
                    at
                ],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn create_template(
        &self,
        workspace_id: &str,
        t: TemplateWrite,
    ) -> Result<TemplateRecord, MetaError> {
        let at = Utc::now();
        let id = new_id();
        self.db
            .execute(
                "INSERT INTO dashboard_templates (template_id, workspace_id, name, description, \
                 category, template_config, is_default, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
                args![
                    &id,
                    workspace_id,
                    t.name,
                    t.description,
                    t.category,
                    t.template_config,
                    t.is_default,
                    at
                ],
            )
            .await
            .map_err(backend)?;
        self.template(&id)
            .await?
            .ok_or(MetaError::NotFound("template"))
    }

    async fn template(&self, template_id: &str) -> Result<Option<TemplateRecord>, MetaError> {
        self.fetch_one_of(
            "SELECT * FROM dashboard_templates WHERE template_id = $1",
            template_id,
            template_from,
        )
        .await
    }

    async fn templates(&self, workspace_id: &str) -> Result<Vec<TemplateRecord>, MetaError> {
        let rows = self
            .db
            .fetch(
                "SELECT * FROM dashboard_templates WHERE workspace_id IS NULL \
                 OR workspace_id = $1 ORDER BY category, name, template_id",
                args![workspace_id],
            )
            .await
            .map_err(backend)?;
        all(&rows, template_from)
    }

    async fn delete_template(&self, template_id: &str) -> Result<bool, MetaError> {
        let n = self
            .db
            .execute(
                "DELETE FROM dashboard_templates WHERE template_id = $1 \
                 AND workspace_id IS NOT NULL",
                args![template_id],
            )
            .await
            .map_err(backend)?;
        Ok(n > 0)
    }
}
