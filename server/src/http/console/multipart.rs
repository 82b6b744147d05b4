//! Multipart console forms: the CSRF token first, files stored as uploads as they arrive, and
//! the shared checks of their fields.

use axum::extract::Multipart;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use frontend::pages::FormErrors;

use super::*;

/// The text fields of a multipart form, and its files (already stored as uploads).
pub(super) struct Multi {
    pub(super) fields: HashMap<String, String>,
    /// Field name → (uploaded name, checksum).
    pub(super) files: HashMap<String, (String, String)>,
}

impl Multi {
    pub(super) fn text(&self, name: &str) -> String {
        self.fields
            .get(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    }
}

/// Reads a multipart console form. The CSRF token must come before any file (the pages put it
/// first), so nothing is stored for a forged request. Empty file inputs are skipped.
pub(super) async fn read_multipart(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    mut multipart: Multipart,
    needed: Role,
) -> Result<(Session, Multi, FormErrors), Response> {
    let mut fields = HashMap::new();
    let mut files = HashMap::new();
    let mut errors = FormErrors::default();
    let mut session_ok: Option<Session> = None;
    let bad = |detail: String| ApiError::bad_request(ErrorCode::MalformedBody, detail);
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                let s = session(state, headers).await;
                return Err(problem(
                    state,
                    s.as_ref(),
                    headers,
                    bad(format!("the form broke off: {e}")),
                )
                .await);
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        if name == "csrf" {
            let sent = field.text().await.unwrap_or_default();
            session_ok = Some(form_session(state, headers, uri, &sent, needed).await?);
            continue;
        }
        let Some(s) = &session_ok else {
            let s = session(state, headers).await;
            return Err(problem(state, s.as_ref(), headers, csrf_refused()).await);
        };
        match field.file_name().map(str::to_string) {
            Some(file_name) if !file_name.is_empty() => {
                // Browsers may send a path; keep the last component.
                let base = file_name
                    .rsplit(['/', '\\'])
                    .next()
                    .unwrap_or(&file_name)
                    .to_string();
                match state
                    .node
                    .save_upload(&name, &base, field, &s.actor())
                    .await
                {
                    Ok((_, up)) if up.size > 0 => {
                        files.insert(name, (up.name, up.checksum.to_hex()));
                    }
                    Ok(_) => errors.add(name, "the chosen file is empty"),
                    Err(e) => errors.add(name, e.to_string()),
                }
            }
            Some(_) => {
                // An empty file input: drain it.
                let _ = field.bytes().await;
            }
            None => {
                let value = field.text().await.unwrap_or_default();
                fields.insert(name, value);
            }
        }
    }
    match session_ok {
        Some(s) => Ok((s, Multi { fields, files }, errors)),
        None => {
            let s = session(state, headers).await;
            Err(problem(state, s.as_ref(), headers, csrf_refused()).await)
        }
    }
}

pub(super) fn is_checksum(text: &str) -> bool {
    Hash::from_hex(text).is_some()
}

pub(super) fn number(
    errors: &mut FormErrors,
    field: String,
    value: &str,
    what: &str,
    example: &str,
) -> Option<u64> {
    match value.parse::<u64>() {
        Ok(n) => Some(n),
        Err(_) => {
            errors.add(
                field,
                format!("{what} must be a whole number, e.g. {example} (it is {value:?})"),
            );
            None
        }
    }
}
