//! Webhooks over REST: an operator (or an integrator's operator token) registers a URL and
//! reads each hook's delivery log; everyone sees and deletes only their own hooks, an admin
//! every hook. Registering and deleting are audited by the core.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;

use app::auth::Role;

use super::AppState;
use super::auth::Caller;
use super::dto::{
    CreatedWebhook, DeliveryInfo, DeliveryPage, DeliveryQuery, NewWebhook, WebhookInfo,
    WebhookList, json_body,
};
use super::error::{ApiError, ApiPath, BadInput, ErrorCode, NotSignedIn, Problem};

/// Whose hooks a user may see and delete: an admin's scope is every hook.
pub fn scope(user: &app::auth::User) -> Option<&str> {
    (!user.role.allows(Role::Admin)).then_some(user.username.as_str())
}

/// Register a webhook (operator); its secret is in the answer only.
///
/// The node POSTs a JSON notification when a Run the hook matches changes phase (`task.phase`)
/// and when it ends (`run.ended`), signed with `X-Gevulot-Signature: sha256=<hex>`, the
/// HMAC-SHA256 under the secret of `<X-Gevulot-Timestamp>.<body>`. A hook's notifications are
/// sent one at a time in order; a failed one is retried with doubling waits, then given up on.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks",
    tag = "webhooks",
    request_body = NewWebhook,
    responses(
        (status = 201, description = "Registered; the secret is shown only now", body = CreatedWebhook),
        (status = 400, description = "Not the expected JSON, or a bad run or author", body = Problem, content_type = "application/problem+json"),
        NotSignedIn,
        (status = 403, description = "Not an operator", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad URL (`bad_url`), an address hooks may not reach (`address_not_allowed`), or too many hooks (`limit_reached`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    caller.require(Role::Operator)?;
    let new: NewWebhook = json_body(&body)?;
    let filter = new.filter()?;
    let created = state
        .node
        .create_webhook(&caller.actor(), &new.url, filter)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            webhook: WebhookInfo::from(&created.hook),
            secret: created.secret,
        }),
    ))
}

/// Your webhooks (an admin's: every hook), oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    tag = "webhooks",
    responses((status = 200, description = "The hooks", body = WebhookList), NotSignedIn)
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<WebhookList>, ApiError> {
    let hooks = state.node.webhooks_of(scope(&caller.user)).await?;
    Ok(Json(WebhookList {
        items: hooks.iter().map(WebhookInfo::from).collect(),
    }))
}

/// One of your webhooks.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = i64, Path, minimum = 1, description = "The hook's id")),
    responses(
        BadInput,
        (status = 200, description = "The hook", body = WebhookInfo),
        NotSignedIn,
        (status = 404, description = "No such hook of yours", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<WebhookInfo>, ApiError> {
    let hook = state.node.webhook(id, scope(&caller.user)).await?;
    Ok(Json(WebhookInfo::from(&hook)))
}

/// Delete one of your webhooks (operator) with its delivery log; nothing more is sent to it.
#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/{id}",
    tag = "webhooks",
    params(("id" = i64, Path, minimum = 1, description = "The hook's id")),
    responses(
        BadInput,
        (status = 204, description = "Deleted"),
        NotSignedIn,
        (status = 403, description = "Not an operator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such hook of yours", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Operator)?;
    state
        .node
        .delete_webhook(&caller.actor(), id, scope(&caller.user))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A webhook's delivery log, newest first: each notification, its attempts and why the last
/// one failed.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}/deliveries",
    tag = "webhooks",
    params(("id" = i64, Path, minimum = 1, description = "The hook's id"), DeliveryQuery),
    responses(
        (status = 200, description = "One page, newest first", body = DeliveryPage),
        (status = 400, description = "Bad cursor or limit", body = Problem, content_type = "application/problem+json"),
        NotSignedIn,
        (status = 404, description = "No such hook of yours", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    q: Result<Query<DeliveryQuery>, QueryRejection>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let q = q
        .map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidParameter, e.body_text()))?;
    let (found, next_cursor) = page(&state, scope(&caller.user), id, &q).await?;
    Ok(Json(DeliveryPage {
        items: found.iter().map(DeliveryInfo::from).collect(),
        next_cursor,
    }))
}

/// One page of hook `id`'s deliveries for `q` (the REST API's and the console's).
pub async fn page(
    state: &AppState,
    scope: Option<&str>,
    id: i64,
    q: &DeliveryQuery,
) -> Result<(Vec<app::model::Delivery>, Option<String>), ApiError> {
    let (before, limit) = super::audit::id_page(q.cursor.as_deref(), q.limit, 200)?;
    let found = state
        .node
        .webhook_deliveries(id, scope, before, i64::from(limit))
        .await?;
    let next = (found.len() == limit as usize)
        .then(|| found.last().map(|d| d.id.to_string()))
        .flatten();
    Ok((found, next))
}
