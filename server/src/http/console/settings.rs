//! The settings page (operators): version, data directory and its use, effective configuration.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use frontend::Nav;
use frontend::pages;

use super::*;

pub(super) async fn settings_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    s: Session,
) -> Response {
    if !s.user.role.allows(Role::Operator) {
        return problem(&state, Some(&s), &headers, forbidden(Role::Operator)).await;
    }
    let found = crate::http::settings::settings(&state).await;
    let view = pages::SettingsView {
        version: found.version,
        data_directory: found.data_directory,
        filesystem: found
            .filesystem
            .map(|f| (f.size_bytes, f.free_bytes, f.min_free_bytes)),
        areas: found
            .data
            .into_iter()
            .map(|a| pages::AreaRow {
                area: a.area,
                path: a.path,
                bytes: a.bytes,
                files: a.files,
            })
            .collect(),
        settings: found
            .settings
            .into_iter()
            .map(|s| pages::SettingRow {
                name: s.name,
                value: s.value,
                source: s.source,
                help: s.help,
            })
            .collect(),
    };
    render(
        &state,
        Some(&s),
        &headers,
        Page::new("Settings", Nav::Settings),
        move || pages::settings(view),
    )
    .await
}
