//! End-to-end tests: a real server (in-process, or as a process where a crash is the point)
//! driven through its public interfaces only: OTLP over HTTP and gRPC, the REST API, SQL.

#[path = "../common/clickhouse_env.rs"]
mod clickhouse_env;
#[path = "../common/guests.rs"]
mod guests;
#[path = "../common/postgres_env.rs"]
mod postgres_env;
mod support;
#[path = "../common/unique.rs"]
mod unique;

mod clickhouse_outage;

mod alert_delivery;
mod alert_evaluation;
mod alert_suppression;
mod alerting_api;
mod api_keys;
mod auth_flows;
mod bad_input;
mod builtin_channels;
mod channels;
mod dashboards;
mod durability;
mod email_flows;
mod grafana;
mod iam_crawl;
mod operations;
mod otlp_json;
mod plugin_cli;
mod plugins;
mod python_sdk;
mod query_api;
mod tenancy;
mod trace_views;
