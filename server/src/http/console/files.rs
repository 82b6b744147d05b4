//! Downloads: output files (on this node or at their producer) and program images.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use frontend::Nav;
use frontend::pages::{self};
use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize, Default)]
pub(super) struct FilesQuery {
    after: Option<String>,
}

pub(super) async fn files_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    s: Session,
    Query(q): Query<FilesQuery>,
) -> Response {
    let after = q.after.as_deref().and_then(|a| {
        let (seq, index) = a.split_once('.')?;
        Some((seq.parse().ok()?, index.parse().ok()?))
    });
    let result = async {
        let (files, next) = state.node.output_files(after, 100).await?;
        let files = files
            .into_iter()
            .map(|v| pages::FileRow {
                url: v.url,
                size: v.size,
                file: v.file,
            })
            .collect();
        let images = state
            .node
            .images(500)
            .await?
            .into_iter()
            .map(|v| pages::ImageRow {
                url: v.url,
                size: v.size,
                program: v.file,
            })
            .collect();
        Ok::<_, ApiError>(pages::FilesView {
            files,
            images,
            next: next.map(|(seq, index)| format!("/console/files?after={seq}.{index}")),
        })
    }
    .await;
    show(
        &state,
        &s,
        &headers,
        Page::new("Downloads", Nav::Files),
        result,
        pages::files,
    )
    .await
}
