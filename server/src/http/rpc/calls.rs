//! The JSON-RPC middleware every call passes through: times each registered method into the
//! HTTP metrics, accepts `gevulot_listTransactions`' query object as the whole `params`, and
//! answers a parameter the decoder rejects in a `gevulot_*` method with the catalogue's
//! `malformed_json` (the original methods keep their own envelope and are not touched).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use jsonrpsee::core::middleware::{Batch, BatchEntry, Notification, RpcServiceT};
use jsonrpsee::core::server::BatchResponseBuilder;
use jsonrpsee::server::MethodResponse;
use jsonrpsee::types::error::INVALID_PARAMS_CODE;
use jsonrpsee::types::{ErrorObjectOwned, Request};
use serde_json::value::RawValue;

use crate::http::error::ErrorCode;
use crate::http::metrics::Metrics;

/// The method whose single object parameter may also be sent as the whole `params`.
const OBJECT_PARAMS: &str = "gevulot_listTransactions";

#[derive(Clone, Debug)]
pub(super) struct Calls<S> {
    pub(super) inner: S,
    pub(super) metrics: Arc<Metrics>,
    /// The registered method names (the metric's label values: never a caller's string).
    pub(super) methods: Arc<[&'static str]>,
    pub(super) max_response_bytes: usize,
}

impl<S> Calls<S> {
    fn known(&self, method: &str) -> Option<&'static str> {
        self.methods.iter().copied().find(|m| *m == method)
    }
}

/// `{…}` as `[{…}]`, so that the object is the method's one positional parameter.
fn as_positional(request: &mut Request<'_>) {
    if request.method_name() != OBJECT_PARAMS {
        return;
    }
    let Some(params) = &request.params else {
        return;
    };
    if !params.get().trim_start().starts_with('{') {
        return;
    }
    if let Ok(wrapped) = RawValue::from_string(format!("[{}]", params.get())) {
        request.params = Some(Cow::Owned(wrapped));
    }
}

/// The decoder's words in an invalid-params error (`data`, as jsonrpsee puts them).
fn decoder_words(response: &MethodResponse) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Option<Error>,
    }
    #[derive(serde::Deserialize)]
    struct Error {
        message: String,
        data: Option<serde_json::Value>,
    }
    let error = serde_json::from_str::<Envelope>(response.as_json().get())
        .ok()
        .and_then(|e| e.error);
    match error {
        Some(Error {
            data: Some(serde_json::Value::String(words)),
            ..
        }) => words,
        Some(Error { message, .. }) => message,
        None => "the parameters could not be decoded".into(),
    }
}

impl<S> RpcServiceT for Calls<S>
where
    S: RpcServiceT<
            MethodResponse = MethodResponse,
            BatchResponse = MethodResponse,
            NotificationResponse = MethodResponse,
        > + Clone
        + Send
        + Sync
        + 'static,
{
    type MethodResponse = MethodResponse;
    type NotificationResponse = MethodResponse;
    type BatchResponse = MethodResponse;

    fn call<'a>(
        &self,
        mut request: Request<'a>,
    ) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        let this = self.clone();
        async move {
            let start = Instant::now();
            let method = this.known(request.method_name());
            as_positional(&mut request);
            let id = request.id().into_owned();
            let mut response = this.inner.call(request).await;
            if let Some(name) = method {
                if name.starts_with("gevulot_")
                    && response.as_error_code() == Some(INVALID_PARAMS_CODE)
                {
                    let error: ErrorObjectOwned = api::rpc::error(
                        ErrorCode::MalformedJson.status(),
                        ErrorCode::MalformedJson,
                        format!(
                            "the parameters are not what {name} takes: {}",
                            decoder_words(&response)
                        ),
                    );
                    let extensions = response.extensions().clone();
                    response = MethodResponse::error(id, error).with_extensions(extensions);
                }
                this.metrics.rpc_call(name, start.elapsed().as_secs_f64());
            }
            response
        }
    }

    /// Each call of the batch through [`Self::call`] (the inner service would bypass it).
    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        let this = self.clone();
        async move {
            let mut responses = BatchResponseBuilder::new_with_limit(this.max_response_bytes);
            let mut got_notification = false;
            for entry in batch {
                let response = match entry {
                    Ok(BatchEntry::Call(request)) => this.call(request).await,
                    Ok(BatchEntry::Notification(n)) => {
                        got_notification = true;
                        let _ = this.inner.notification(n).await;
                        continue;
                    }
                    Err(e) => {
                        let (error, id) = e.into_parts();
                        MethodResponse::error(id, error)
                    }
                };
                if let Err(too_large) = responses.append(response) {
                    return too_large;
                }
            }
            if responses.is_empty() && got_notification {
                MethodResponse::notification()
            } else {
                MethodResponse::from_batch(responses.finish())
            }
        }
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        self.inner.notification(n)
    }
}
