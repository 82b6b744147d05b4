//! The audit log over REST (admins): read-only, newest first. No route changes or deletes an
//! entry; retention (`GEVULOT_AUDIT_RETENTION_DAYS`) is the only deletion.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};

use app::auth::Role;
use app::model::{AuditAction, AuditEntry};

use super::AppState;
use super::auth::Caller;
use super::dto::{AuditEntryInfo, AuditPage, AuditQuery};
use super::error::{ApiError, ErrorCode, NotSignedIn, Problem};

/// The audit log: every operator action with who, when, from where and what (admin).
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "node",
    params(AuditQuery),
    responses(
        (status = 200, description = "One page, newest first", body = AuditPage),
        (status = 400, description = "Bad cursor, limit or action", body = Problem, content_type = "application/problem+json"),
        NotSignedIn,
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require(Role::Admin)?;
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidParameter,
                e.body_text(),
            ));
        }
    };
    let (entries, next) = page(&state, &q).await?;
    Ok(Json(AuditPage {
        items: entries.iter().map(AuditEntryInfo::from).collect(),
        next_cursor: next,
    }))
}

/// A page of rows numbered by id, newest first: the id to read below (the `cursor`, the last id
/// of the previous page) and the page size (default 50, at most `max`).
pub fn id_page(
    cursor: Option<&str>,
    limit: Option<u32>,
    max: u32,
) -> Result<(Option<i64>, u32), ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidParameter,
            format!("limit: between 1 and {max}"),
        ));
    }
    // Only the decimal ids this server issues (1 to 18 digits): "+5" or "-5" are not cursors.
    let before = match cursor.filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .ok()
                .filter(|_| c.len() <= 18 && c.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        ErrorCode::InvalidCursor,
                        "cursor: pass the next_cursor of the previous page",
                    )
                })?,
        ),
    };
    Ok((before, limit))
}

/// One page of entries for `q`, and the cursor of the next (the REST API's and the console's).
pub async fn page(
    state: &AppState,
    q: &AuditQuery,
) -> Result<(Vec<AuditEntry>, Option<String>), ApiError> {
    let (before, limit) = id_page(q.cursor.as_deref(), q.limit, 1000)?;
    let action = match q.action.as_deref().filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => Some(AuditAction::parse(a).ok_or_else(|| {
            let known: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
            ApiError::bad_request(
                ErrorCode::InvalidParameter,
                format!("action: {a:?} is not one of {}", known.join(", ")),
            )
        })?),
    };
    let entries = state
        .node
        .audit_log(before, action, i64::from(limit))
        .await?;
    let next = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    Ok((entries, next))
}
