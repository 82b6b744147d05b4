//! Programs: the list with the deploy form, and one program with the runs that use it.

use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use frontend::pages::{self, FormErrors};
use frontend::{Flash, Nav};

use super::*;

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
    s: Session,
) -> Response {
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
                &s.actor(),
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
    s: Session,
    Path(hash): Path<String>,
) -> Response {
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
        let image_url = format!("{}/{}", state.node.file_base_url(), program.image_path());
        let image_state = state.node.image_state(&program);
        Ok::<_, ApiError>(pages::ProgramView {
            program,
            runs,
            image_url,
            image_state,
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
