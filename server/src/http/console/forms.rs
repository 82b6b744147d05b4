//! Programs (list, detail, the deploy form) and the run form: multipart forms whose files are
//! stored as uploads before the Deploy or Run is signed.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use frontend::pages::{self, FormErrors};
use frontend::{Flash, Nav};

use super::*;

// --- programs ------------------------------------------------------------------------------

pub(super) async fn programs_view(
    state: &AppState,
    s: &Session,
    form: pages::DeployForm,
) -> Result<pages::ProgramsView, ApiError> {
    Ok(pages::ProgramsView {
        programs: state.node.programs(500).await?,
        can_deploy: s.user.role.allows(Role::Operator),
        csrf: s.csrf.clone(),
        form,
        max_upload: state.node.max_upload_bytes(),
    })
}

pub(super) async fn programs_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let s = signed_in!(state, headers, uri);
    let form = pages::DeployForm {
        prover: default_program_form(),
        verifier: default_program_form(),
        ..Default::default()
    };
    show(
        &state,
        &s,
        &headers,
        Page::new("Programs", Nav::Programs),
        programs_view(&state, &s, form).await,
        pages::programs,
    )
    .await
}

pub(super) fn default_program_form() -> pages::ProgramForm {
    pages::ProgramForm {
        mem_mib: "2048".into(),
        cpus: "2".into(),
        gpus: "0".into(),
        ..Default::default()
    }
}

/// The text fields of a multipart form, and its files (already stored as uploads).
pub(super) struct Multi {
    fields: HashMap<String, String>,
    /// Field name → (uploaded name, checksum).
    files: HashMap<String, (String, String)>,
}

impl Multi {
    fn text(&self, name: &str) -> String {
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
                    .save_upload(&name, &base, field, &s.user.username)
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

pub(super) fn program_form(m: &Multi, role: &str) -> pages::ProgramForm {
    pages::ProgramForm {
        name: m.text(&format!("{role}_name")),
        url: m.text(&format!("{role}_url")),
        checksum: m.text(&format!("{role}_checksum")).to_ascii_lowercase(),
        mem_mib: m.text(&format!("{role}_mem_mib")),
        cpus: m.text(&format!("{role}_cpus")),
        gpus: m.text(&format!("{role}_gpus")),
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

pub(super) fn program_spec(
    m: &Multi,
    role: &str,
    form: &pages::ProgramForm,
    errors: &mut FormErrors,
) -> ProgramSpec {
    let label = if role == "prover" {
        "prover"
    } else {
        "verifier"
    };
    if form.name.is_empty() {
        errors.add(format!("{role}_name"), format!("Name the {label} program."));
    }
    let file = m.files.get(&format!("{role}_image"));
    let image = match file {
        Some((name, checksum)) => ImageSource::Upload {
            checksum: checksum.clone(),
            file_name: name.clone(),
        },
        None => {
            if form.url.is_empty() {
                errors.add(
                    format!("{role}_image"),
                    format!("Upload the {label}'s image, or give its URL and BLAKE3 checksum."),
                );
            } else if !is_checksum(&form.checksum) {
                errors.add(
                    format!("{role}_checksum"),
                    "The checksum must be the image's BLAKE3 as 64 hexadecimal characters (`b3sum image`).",
                );
            }
            ImageSource::Url {
                url: form.url.clone(),
                checksum: form.checksum.clone(),
                file_name: None,
            }
        }
    };
    let mem = number(
        errors,
        format!("{role}_mem_mib"),
        &form.mem_mib,
        "Memory",
        "2048",
    );
    let cpus = number(errors, format!("{role}_cpus"), &form.cpus, "CPUs", "2");
    let gpus = number(errors, format!("{role}_gpus"), &form.gpus, "GPUs", "0");
    ProgramSpec {
        name: form.name.clone(),
        image,
        resources: match (mem, cpus, gpus) {
            (Some(mem), Some(cpus), Some(gpus)) => Some(ResourceRequest { mem, cpus, gpus }),
            _ => None,
        },
    }
}

pub(super) async fn deploy(
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
    let form = pages::DeployForm {
        name: m.text("name"),
        prover: program_form(&m, "prover"),
        verifier: program_form(&m, "verifier"),
        errors: FormErrors::default(),
    };
    if form.name.is_empty() {
        errors.add(
            "name",
            "Name the pair, e.g. the proof system it implements.",
        );
    }
    let prover = program_spec(&m, "prover", &form.prover, &mut errors);
    let verifier = program_spec(&m, "verifier", &form.verifier, &mut errors);
    if errors.is_empty() {
        match state
            .node
            .deploy(
                form.name.clone(),
                &prover,
                &verifier,
                Source::Console,
                &s.user.username,
            )
            .await
        {
            Ok(d) => {
                return after_upload(
                    &headers,
                    &format!("/console/programs/{}", d.prover),
                    Flash::Ok(format!(
                        "Deployed. The Deploy transaction is {}; runs can use the prover and the verifier now.",
                        d.hash
                    )),
                );
            }
            Err(e) => errors.add("", e.to_string()),
        }
    }
    let form = pages::DeployForm { errors, ..form };
    show(
        &state,
        &s,
        &headers,
        Page::new("Programs", Nav::Programs).status(StatusCode::UNPROCESSABLE_ENTITY),
        programs_view(&state, &s, form).await,
        pages::programs,
    )
    .await
}

pub(super) async fn program_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(hash): Path<String>,
) -> Response {
    let s = signed_in!(state, headers, uri);
    let result = async {
        let hash = crate::http::dto::parse_hash("hash", &hash)?;
        let program = state.node.program(&hash).await?;
        let runs = state
            .node
            .runs_using(&hash, 50)
            .await?
            .iter()
            .map(Hash::to_hex)
            .collect();
        let image_url = format!(
            "{}/images/{}/{}",
            state.node.file_base_url(),
            program.hash.to_hex(),
            program.image_file_name
        );
        Ok::<_, ApiError>(pages::ProgramView {
            program,
            runs,
            image_url,
        })
    }
    .await;
    match result {
        Ok(view) => {
            let title = view.program.name.clone();
            render(
                &state,
                Some(&s),
                &headers,
                Page::new(title, Nav::Programs),
                move || pages::program(view),
            )
            .await
        }
        Err(e) => problem(&state, Some(&s), &headers, e).await,
    }
}

// --- runs ----------------------------------------------------------------------------------

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
    uri: Uri,
) -> Response {
    let s = signed_in!(state, headers, uri);
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
            .start_run(&steps, Source::Console, &s.user.username)
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
