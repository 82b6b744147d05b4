//! The new-run form: up to four steps, each with arguments and an input by upload, by URL, or
//! passed on from the step before.

use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use frontend::pages::{self, FormErrors};
use frontend::{Flash, Nav};

use super::*;

pub(super) async fn runs_view(
    state: &AppState,
    s: &Session,
    form: pages::RunForm,
) -> Result<pages::RunsView, ApiError> {
    Ok(pages::RunsView {
        programs: state.node.programs(500).await?,
        can_run: s.user.role.allows(Role::Operator),
        csrf: s.csrf.clone(),
        form,
    })
}

pub(super) async fn new_run_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    s: Session,
) -> Response {
    show(
        &state,
        &s,
        &headers,
        Page::new("New run", Nav::Runs),
        runs_view(&state, &s, pages::RunForm::default()).await,
        pages::new_run,
    )
    .await
}

pub(super) fn run_request(
    m: &Multi,
    errors: &mut FormErrors,
) -> (Vec<pages::StepForm>, Vec<StepSpec>) {
    let mut forms = Vec::new();
    let mut steps: Vec<StepSpec> = Vec::new();
    for i in 0..pages::RUN_FORM_STEPS {
        let key = |f: &str| format!("steps[{i}].{f}");
        let f = pages::StepForm {
            program: m.text(&key("program")),
            args: m.fields.get(&key("args")).cloned().unwrap_or_default(),
            input_path: m.text(&key("input_path")),
            input_url: m.text(&key("input_url")),
            input_checksum: m.text(&key("input_checksum")).to_ascii_lowercase(),
            previous_output: m.text(&key("previous_output")),
        };
        let file = m.files.get(&key("input_file"));
        let used = !f.program.is_empty();
        if !used {
            if i == 0 {
                errors.add(key("program"), "Choose the program of step 1.");
            } else if file.is_some() || !f.input_url.is_empty() || !f.previous_output.is_empty() {
                errors.add(
                    key("program"),
                    format!("Step {} has inputs but no program; choose one.", i + 1),
                );
            }
            forms.push(f);
            continue;
        }
        let mut inputs = Vec::new();
        let has_input = file.is_some() || !f.input_url.is_empty();
        if has_input && f.input_path.is_empty() {
            errors.add(
                key("input_path"),
                "Say where the program finds the input, e.g. /workspace/in.txt.",
            );
        }
        match (file, f.input_url.is_empty()) {
            (Some((name, checksum)), _) => inputs.push(InputSpec {
                file_name: f.input_path.clone(),
                source: InputSource::Upload {
                    checksum: checksum.clone(),
                    name: name.clone(),
                },
            }),
            (None, false) => {
                if !is_checksum(&f.input_checksum) {
                    errors.add(
                        key("input_checksum"),
                        "Give the input's BLAKE3 checksum as 64 hexadecimal characters (`b3sum file`).",
                    );
                }
                inputs.push(InputSpec {
                    file_name: f.input_path.clone(),
                    source: InputSource::Url {
                        url: f.input_url.clone(),
                        checksum: f.input_checksum.clone(),
                    },
                });
            }
            (None, true) => {}
        }
        if !f.previous_output.is_empty() {
            match steps.last() {
                Some(prev) => inputs.push(InputSpec {
                    file_name: f.previous_output.clone(),
                    source: InputSource::FromProgram(prev.program),
                }),
                None => errors.add(
                    key("previous_output"),
                    "There is no earlier step whose file could be passed on.",
                ),
            }
        }
        let Some(program) = Hash::from_hex(&f.program) else {
            errors.add(key("program"), "Choose a deployed program.");
            forms.push(f);
            continue;
        };
        steps.push(StepSpec {
            program,
            args: f
                .args
                .lines()
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
            inputs,
        });
        forms.push(f);
    }
    (forms, steps)
}

pub(super) async fn start_run(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    multipart: Multipart,
) -> Response {
    let (s, m, mut errors) =
        match read_multipart(&state, &headers, &uri, multipart, Role::Operator).await {
            Ok(v) => v,
            Err(r) => return r,
        };
    let (forms, steps) = run_request(&m, &mut errors);
    if errors.is_empty() {
        match state
            .node
            .start_run(&steps, Source::Console, &s.actor())
            .await
        {
            Ok(hash) => {
                return after_upload(
                    &headers,
                    &format!("/console/transactions/{}", hash.to_hex()),
                    Flash::Ok(
                        "The run was accepted; its steps appear below as they progress.".into(),
                    ),
                );
            }
            Err(e) => errors.add("", e.to_string()),
        }
    }
    let form = pages::RunForm {
        steps: forms,
        errors,
    };
    show(
        &state,
        &s,
        &headers,
        Page::new("New run", Nav::Runs).status(StatusCode::UNPROCESSABLE_ENTITY),
        runs_view(&state, &s, form).await,
        pages::new_run,
    )
    .await
}
