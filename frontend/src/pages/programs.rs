//! Deployed programs, one program, and the deploy form.

use super::*;

/// One program of the deploy form, as the user typed it.
#[derive(Clone, Debug, Default)]
pub struct ProgramForm {
    pub name: String,
    pub url: String,
    pub checksum: String,
    pub mem_mib: String,
    pub cpus: String,
    pub gpus: String,
}

#[derive(Clone, Debug, Default)]
pub struct DeployForm {
    pub name: String,
    pub prover: ProgramForm,
    pub verifier: ProgramForm,
    pub errors: FormErrors,
}

#[derive(Clone, Debug)]
pub struct ProgramsView {
    pub programs: Vec<Program>,
    pub can_deploy: bool,
    pub csrf: String,
    pub form: DeployForm,
    pub max_upload: u64,
}

fn program_fields(
    role: &'static str,
    f: ProgramForm,
    errors: &FormErrors,
) -> impl IntoView + use<> {
    let legend = if role == "prover" {
        "Prover"
    } else {
        "Verifier"
    };
    let file_name = format!("{role}_image");
    let file_error = errors.get(&file_name);
    view! {
        <fieldset>
            <legend>{legend}</legend>
            {input("Program name", format!("{role}_name"), f.name, errors, None, "text")}
            <label>
                "Image file"
                <span class="hint">"Upload a kernel bundle or raw disk image, or give its URL and checksum below."</span>
                <input type="file" id=file_name.clone() name=file_name aria-invalid=file_error.as_ref().map(|_| "true")/>
                {file_error.map(|e| view! { <span class="field-error">{e}</span> })}
            </label>
            <div class="row">
                {input("or image URL", format!("{role}_url"), f.url, errors, None, "url")}
                {input("and its BLAKE3 checksum", format!("{role}_checksum"), f.checksum, errors, None, "text")}
            </div>
            <div class="row">
                {input("Memory (MiB)", format!("{role}_mem_mib"), f.mem_mib, errors, None, "number")}
                {input("CPUs", format!("{role}_cpus"), f.cpus, errors, None, "number")}
                {input("GPUs", format!("{role}_gpus"), f.gpus, errors, None, "number")}
            </div>
        </fieldset>
    }
}

pub fn programs(v: ProgramsView) -> impl IntoView {
    let list = if v.programs.is_empty() {
        empty("No programs deployed yet.").into_any()
    } else {
        view! {
            <table id="programs">
                <thead><tr><th scope="col">"Name"</th><th scope="col">"Role"</th><th scope="col">"Program"</th><th scope="col">"Image"</th><th scope="col">"Resources"</th><th scope="col">"Deployed"</th></tr></thead>
                <tbody>
                    {v.programs.into_iter().map(|p| {
                        let r = p.resource_requirements.unwrap_or_default();
                        let href = format!("/console/programs/{}", p.hash.to_hex());
                        view! {
                            <tr>
                                <td><a href=href>{p.name}</a></td>
                                <td>{p.role.as_str()}</td>
                                <td class="hash">{short(&p.hash.to_hex())}</td>
                                <td>{p.image_file_name}</td>
                                <td>{format!("{} MiB, {} CPU, {} GPU", r.mem, r.cpus, r.gpus)}</td>
                                <td>{time(p.created_at_ms)}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        }
        .into_any()
    };
    let form = v.form;
    let errors = form.errors.clone();
    let deploy = if v.can_deploy {
        view! {
            <section class="panel" aria-labelledby="deploy-h">
                <h2 id="deploy-h">"Deploy a prover and a verifier"</h2>
                {errors.summary()}
                <form class="stack" id="deploy" method="post" action="/console/programs" enctype="multipart/form-data" data-upload="true">
                    {csrf_field(&v.csrf)}
                    {input("Name of the pair", "name".into(), form.name, &errors, None, "text")}
                    {program_fields("prover", form.prover, &errors)}
                    {program_fields("verifier", form.verifier, &errors)}
                    <p class="muted">{format!("Uploads up to {} each. Resources default to 2048 MiB, 2 CPUs, no GPU.", bytes(v.max_upload))}</p>
                    <div class="upload-progress" hidden=true>
                        <progress value="0" max="1"></progress>
                        <output aria-live="polite"></output>
                    </div>
                    <div><button type="submit">"Deploy"</button></div>
                </form>
            </section>
        }
        .into_any()
    } else {
        view! { <p class="muted" id="no-deploy">"Deploying programs needs the operator role."</p> }
            .into_any()
    };
    view! {
        <h1>"Programs"</h1>
        <section class="panel">{list}</section>
        {deploy}
    }
}

#[derive(Clone, Debug)]
pub struct ProgramView {
    pub program: Program,
    pub runs: Vec<String>,
    pub image_url: String,
    /// Where the image stands on this node; `None` on a node that does not execute.
    pub image_state: Option<app::download::FetchState>,
}

/// A fetch's state in a few words.
pub fn fetch_line(state: &app::download::FetchState) -> String {
    use app::download::FetchState;
    match state {
        FetchState::Absent => "not fetched yet".to_string(),
        FetchState::Fetching(p) if p.attempt == 0 => "waiting to be fetched".to_string(),
        FetchState::Fetching(p) => match p.total {
            Some(total) => format!("fetching: {} of {}", bytes(p.received), bytes(total)),
            None => format!("fetching: {}", bytes(p.received)),
        },
        FetchState::Ready => "fetched and checked".to_string(),
        FetchState::Failed(why) => format!("failed: {why}"),
        FetchState::NotNeeded(why) => format!("not fetched: {why}"),
    }
}

pub fn program(v: ProgramView) -> impl IntoView {
    let p = v.program;
    let r = p.resource_requirements.unwrap_or_default();
    view! {
        <h1>{p.name.clone()} " " <span class="muted">"(" {p.role.as_str()} ")"</span></h1>
        <section class="panel">
            <table>
                <tbody>
                    <tr><th scope="row">"Program hash"</th><td class="hash">{p.hash.to_hex()}</td></tr>
                    <tr><th scope="row">"Image"</th><td>{p.image_file_name.clone()}</td></tr>
                    <tr><th scope="row">"Image URL"</th><td class="hash">{p.image_file_url.clone()}</td></tr>
                    <tr><th scope="row">"BLAKE3"</th><td class="hash">{p.image_file_checksum.clone()}</td></tr>
                    <tr><th scope="row">"Served here"</th><td><a class="hash" href=v.image_url.clone()>{v.image_url.clone()}</a></td></tr>
                    {v.image_state.map(|s| {
                        let state = s.as_str();
                        view! { <tr><th scope="row">"On this node"</th><td id="image-state" data-state=state>{fetch_line(&s)}</td></tr> }
                    })}
                    <tr><th scope="row">"Resources"</th><td>{format!("{} MiB memory, {} CPUs, {} GPUs", r.mem, r.cpus, r.gpus)}</td></tr>
                    <tr><th scope="row">"Deployed by"</th><td>{tx_link(&p.deploy_tx.to_hex())} " at " {time(p.created_at_ms)}</td></tr>
                </tbody>
            </table>
        </section>
        <h2>"Runs using it"</h2>
        <section class="panel">
            {if v.runs.is_empty() {
                empty("No runs yet.").into_any()
            } else {
                view! { <ul>{v.runs.into_iter().map(|h| view! { <li>{tx_link(&h)}</li> }).collect_view()}</ul> }.into_any()
            }}
        </section>
    }
}
