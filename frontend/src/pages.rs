//! The pages, each a function from its view model to HTML. Forms post to the server as plain
//! HTML forms (`application/x-www-form-urlencoded`, or `multipart/form-data` for uploads) with the
//! session's CSRF token; a refused form comes back with the user's input and a message at each
//! field that needs a change.

use app::gpu::{GpuStatus, PoolState};
use app::model::{OutputFile, Phase, Program, Task};
use leptos::prelude::*;

use crate::{bytes, short, time};

/// Messages for form fields, by field name; `""` for the form as a whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FormErrors(pub Vec<(String, String)>);

impl FormErrors {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push((field.into(), message.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn get(&self, field: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.clone())
    }

    fn summary(&self) -> impl IntoView + use<> {
        let all: Vec<String> = self.0.iter().map(|(_, m)| m.clone()).collect();
        (!all.is_empty()).then(|| {
            view! {
                <div class="flash error" role="alert" id="form-errors">
                    <strong>"Please correct this and submit again:"</strong>
                    <ul class="errors">{all.into_iter().map(|m| view! { <li>{m}</li> }).collect_view()}</ul>
                </div>
            }
        })
    }
}

/// A labelled text input that shows its error and keeps its value.
fn input(
    label: &'static str,
    name: String,
    value: String,
    errors: &FormErrors,
    hint: Option<&'static str>,
    kind: &'static str,
) -> impl IntoView + use<> {
    let error = errors.get(&name);
    let invalid = error.as_ref().map(|_| "true");
    let described = error.as_ref().map(|_| format!("{name}-error"));
    let error_id = format!("{name}-error");
    view! {
        <label>
            {label}
            {hint.map(|h| view! { <span class="hint">{h}</span> })}
            <input type=kind id=name.clone() name=name value=value aria-invalid=invalid aria-describedby=described/>
            {error.map(|e| view! { <span class="field-error" id=error_id>{e}</span> })}
        </label>
    }
}

fn csrf_field(csrf: &str) -> impl IntoView + use<> {
    view! { <input type="hidden" name="csrf" value=csrf.to_string()/> }
}

fn phase_badge(phase: &str) -> impl IntoView + use<> {
    let class = format!("phase {phase}");
    let text = phase.replace('_', " ");
    view! { <span class=class data-phase=phase.to_string()>{text}</span> }
}

fn tx_link(hex: &str) -> impl IntoView + use<> {
    let href = format!("/console/transactions/{hex}");
    view! { <a class="hash" href=href title=hex.to_string()>{short(hex)}</a> }
}

fn empty(text: &'static str) -> impl IntoView {
    view! { <p class="empty">{text}</p> }
}

// --- sign-in -------------------------------------------------------------------------------

#[derive(Clone, Debug, Default)]
pub struct SignInView {
    pub username: String,
    pub error: Option<String>,
    /// Where to go after signing in (a console path).
    pub next: String,
    /// No users exist yet: say how to create the first admin.
    pub first_run: bool,
    /// The form's CSRF token (there is no session yet: it is also in a cookie).
    pub csrf: String,
}

pub fn sign_in(v: SignInView) -> impl IntoView {
    let error = v.error.clone();
    view! {
        <h1>"Sign in"</h1>
        <div class="panel" style="max-width: 28rem">
            {error.map(|e| view! { <div class="flash error" role="alert" id="sign-in-error">{e}</div> })}
            {v.first_run.then(|| view! {
                <p class="muted" id="first-run">
                    "No console users exist yet. " <a href="/console/setup">"Create the first admin"</a>
                    " with the one-time setup token the node printed when it started, or run "
                    <code>"gevulot user create admin --role admin"</code> "."
                </p>
            })}
            <form class="stack" method="post" action="/console/sign-in">
                {csrf_field(&v.csrf)}
                <input type="hidden" name="next" value=v.next/>
                <label>"Username"
                    <input id="username" name="username" value=v.username autocomplete="username" required=true autofocus=true/>
                </label>
                <label>"Password"
                    <input id="password" name="password" type="password" autocomplete="current-password" required=true/>
                </label>
                <div><button type="submit">"Sign in"</button></div>
            </form>
        </div>
    }
}

#[derive(Clone, Debug, Default)]
pub struct SetupView {
    pub username: String,
    pub errors: FormErrors,
    /// The form's CSRF token (there is no session yet: it is also in a cookie).
    pub csrf: String,
}

/// The first admin, with the setup token the node printed on its first start.
pub fn setup(v: SetupView) -> impl IntoView {
    let errors = v.errors.clone();
    view! {
        <h1>"Create the first admin"</h1>
        <div class="panel" style="max-width: 32rem">
            {errors.summary()}
            <form class="stack" method="post" action="/console/setup">
                {csrf_field(&v.csrf)}
                {input("Setup token", "token".into(), String::new(), &errors, Some("Printed by the node on standard output when it started without users."), "text")}
                {input("Username", "username".into(), v.username, &errors, None, "text")}
                <label>"Password" <span class="hint">{format!("At least {} characters.", app::auth::MIN_PASSWORD_LEN)}</span>
                    <input type="password" id="password" name="password" autocomplete="new-password" required=true/></label>
                <div><button type="submit">"Create and sign in"</button></div>
            </form>
        </div>
    }
}

// --- dashboard -----------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct NodeSummary {
    pub public_key: String,
    pub version: String,
    pub database: String,
    pub started_at_ms: i64,
    pub transactions: i64,
    pub execution: bool,
    pub file_base_url: String,
}

#[derive(Clone, Debug)]
pub struct ResourceSummary {
    pub cpus: u64,
    pub mem_mib: u64,
    pub free_cpus: u64,
    pub free_mem_mib: u64,
    pub running: usize,
    pub waiting: usize,
}

#[derive(Clone, Debug)]
pub struct DashboardView {
    pub node: NodeSummary,
    /// `None` when the node does not execute programs.
    pub resources: Option<ResourceSummary>,
    pub gpus: Vec<GpuStatus>,
    /// Tasks per phase.
    pub queue: Vec<(Phase, i64)>,
    /// The most recent failed or timed-out tasks.
    pub failures: Vec<Task>,
    /// The peer network; `None` only where the node runs without one.
    pub network: Option<NetworkSummary>,
}

/// This node in the peer network.
#[derive(Clone, Debug)]
pub struct NetworkSummary {
    pub peer_id: String,
    pub listen_addr: String,
    pub psk_fingerprint: String,
    /// Who may join and author, in a sentence.
    pub acl: String,
    /// The latest whitelist sync's outcome in a sentence, when the whitelist follows a URL.
    pub acl_sync: Option<String>,
    pub peers: Vec<PeerRow>,
}

/// A connected peer.
#[derive(Clone, Debug)]
pub struct PeerRow {
    pub peer_id: String,
    /// The peer's node key (hex), when its id names one.
    pub public_key: Option<String>,
    pub address: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    pub connected_at_ms: i64,
    pub agent_version: Option<String>,
}

pub fn dashboard(v: DashboardView) -> impl IntoView {
    let n = v.node.clone();
    view! {
        <h1>"Dashboard"</h1>
        <div class="grid">
            <section class="panel" aria-labelledby="node-h">
                <h2 id="node-h">"This node"</h2>
                <p class="hash" title="public key">{n.public_key}</p>
                <p>"Version " {n.version} " · " {n.database} " · since " {time(n.started_at_ms)} " UTC"</p>
                <p>"Downloads served at " <code>{n.file_base_url}</code></p>
                <p>{if n.execution { "Executes programs." } else { "Relays only (GEVULOT_NODE_NO_EXECUTION)." }}</p>
            </section>
            {v.network.clone().map(network)}
        </div>
        {dashboard_live(v)}
    }
}

/// The dashboard's peer panel: identity in the network, who may join, who is connected.
fn network(n: NetworkSummary) -> impl IntoView {
    let count = n.peers.len();
    let peers = if n.peers.is_empty() {
        empty("No peer connected. Peers join with the same GEVULOT_PSK_PASSPHRASE and this node's address in their GEVULOT_P2P_DISCOVERY_ADDR.").into_any()
    } else {
        view! {
            <table id="peers">
                <thead><tr><th scope="col">"Node key"</th><th scope="col">"Address"</th><th scope="col">"Since"</th><th scope="col">"Software"</th></tr></thead>
                <tbody>
                    {n.peers.into_iter().map(|p| {
                        let key = p.public_key.unwrap_or_else(|| p.peer_id.clone());
                        let id = p.peer_id.clone();
                        view! {
                            <tr data-peer=id>
                                <td class="hash" title=p.peer_id>{key}</td>
                                <td><span class="mono">{p.address}</span>" " <span class="muted">{p.direction}</span></td>
                                <td>{time(p.connected_at_ms)}</td>
                                <td>{p.agent_version.unwrap_or_default()}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        }
        .into_any()
    };
    view! {
        <section class="panel" aria-labelledby="peers-h">
            <h2 id="peers-h">"Peers"</h2>
            <p><span class="stat" id="peer-count">{count}</span>" connected"</p>
            <p>"Listening on " <code>{n.listen_addr}</code> " · key fingerprint " <code title="the pre-shared key's fingerprint: equal on every node of this network">{n.psk_fingerprint}</code></p>
            <p class="hash" title="this node's peer id">{n.peer_id}</p>
            <p id="acl">{n.acl}</p>
            {n.acl_sync.map(|line| view! { <p class="muted" id="acl-sync">{line}</p> })}
            {peers}
        </section>
    }
}

/// The parts of the dashboard that change as tasks run (refreshed in place).
pub fn dashboard_live(v: DashboardView) -> impl IntoView {
    let resources = v.resources.map(|r| {
        view! {
            <section class="panel" aria-labelledby="res-h">
                <h2 id="res-h">"Resources"</h2>
                <p><span class="stat" id="free-cpus">{r.free_cpus}</span>" of " {r.cpus} " CPUs free"</p>
                <p><span class="stat" id="free-mem">{r.free_mem_mib}</span>" of " {r.mem_mib} " MiB free"</p>
                <p><span id="running-tasks">{r.running}</span>" running, "<span id="waiting-tasks">{r.waiting}</span>" waiting for resources"</p>
            </section>
        }
    });
    let queue = if v.queue.is_empty() {
        empty("No tasks yet. Start one from New run.").into_any()
    } else {
        view! {
            <table>
                <thead><tr><th scope="col">"Phase"</th><th scope="col">"Tasks"</th></tr></thead>
                <tbody>
                    {v.queue.into_iter().map(|(p, count)| view! {
                        <tr data-queue=p.as_str()>
                            <td><a href=format!("/console/transactions?phase={}", p.as_str())>{phase_badge(p.as_str())}</a></td>
                            <td>{count}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        }
        .into_any()
    };
    let gpus = if v.gpus.is_empty() {
        empty("No GPUs on this host (or none visible under GEVULOT_SYSFS_ROOT).").into_any()
    } else {
        view! {
            <ul>
                {v.gpus.into_iter().map(|g| {
                    let model = g.gpu.as_ref().map(|x| x.model()).unwrap_or_else(|| "no GPU at this address".into());
                    let task = match g.state { PoolState::Busy(t) => Some(format!(" (task {t})")), _ => None };
                    view! { <li><span class="mono">{g.address.clone()}</span>" " {model} " " {phase_badge(g.state.as_str())} {task}</li> }
                }).collect_view()}
            </ul>
        }
        .into_any()
    };
    let failures = if v.failures.is_empty() {
        empty("No failures.").into_any()
    } else {
        view! {
            <table>
                <thead><tr><th scope="col">"When"</th><th scope="col">"Transaction"</th><th scope="col">"Step"</th><th scope="col">"Reason"</th></tr></thead>
                <tbody>
                    {v.failures.into_iter().map(|t| view! {
                        <tr>
                            <td>{time(t.updated_at_ms)}</td>
                            <td>{tx_link(&t.tx.to_hex())}</td>
                            <td>{t.step_index} " " {phase_badge(t.phase.as_str())}</td>
                            <td>{t.error.unwrap_or_default()}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        }
        .into_any()
    };
    view! {
        <div id="dashboard-live" data-live="true">
            <div class="grid">
                {resources}
                <section class="panel" aria-labelledby="gpu-h">
                    <h2 id="gpu-h">"GPUs"</h2>
                    {gpus}
                </section>
            </div>
            <section class="panel" aria-labelledby="queue-h">
                <h2 id="queue-h">"Tasks by phase"</h2>
                {queue}
            </section>
            <section class="panel" aria-labelledby="fail-h">
                <h2 id="fail-h">"Recent failures"</h2>
                {failures}
            </section>
        </div>
    }
}

// --- programs ------------------------------------------------------------------------------

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

// --- runs ----------------------------------------------------------------------------------

/// One step of the run form, as the user typed it.
#[derive(Clone, Debug, Default)]
pub struct StepForm {
    /// Program hash (hex), or empty for an unused step.
    pub program: String,
    /// One argument per line.
    pub args: String,
    /// Where the program finds the input, e.g. `/workspace/in.txt`.
    pub input_path: String,
    pub input_url: String,
    pub input_checksum: String,
    /// A file of the previous step to pass on, e.g. `/workspace/proof.dat`.
    pub previous_output: String,
}

#[derive(Clone, Debug, Default)]
pub struct RunForm {
    pub steps: Vec<StepForm>,
    pub errors: FormErrors,
}

/// Steps the run form offers (unused ones stay empty).
pub const RUN_FORM_STEPS: usize = 4;

#[derive(Clone, Debug)]
pub struct RunsView {
    pub programs: Vec<Program>,
    pub can_run: bool,
    pub csrf: String,
    pub form: RunForm,
}

pub fn new_run(v: RunsView) -> impl IntoView {
    if !v.can_run {
        return view! {
            <h1>"New run"</h1>
            <p class="muted" id="no-run">"Starting runs needs the operator role."</p>
        }
        .into_any();
    }
    if v.programs.is_empty() {
        return view! {
            <h1>"New run"</h1>
            <section class="panel"><p class="empty">"No programs are deployed yet. " <a href="/console/programs">"Deploy a prover and a verifier"</a> " first."</p></section>
        }
        .into_any();
    }
    let errors = v.form.errors.clone();
    let mut steps = v.form.steps;
    steps.resize(RUN_FORM_STEPS, StepForm::default());
    let programs = v.programs;
    let step_fields = steps
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let options = programs
                .iter()
                .map(|p| {
                    let hex = p.hash.to_hex();
                    let selected = hex == s.program;
                    let label = format!("{} ({}, {})", p.name, p.role.as_str(), short(&hex));
                    view! { <option value=hex selected=selected>{label}</option> }
                })
                .collect_view();
            let select_name = format!("steps[{i}].program");
            let select_error = errors.get(&select_name);
            let args_name = format!("steps[{i}].args");
            let legend = if i == 0 { "Step 1".to_string() } else { format!("Step {} (optional)", i + 1) };
            view! {
                <fieldset>
                    <legend>{legend}</legend>
                    <label>"Program"
                        <select id=select_name.clone() name=select_name aria-invalid=select_error.as_ref().map(|_| "true")>
                            <option value="">"(none)"</option>
                            {options}
                        </select>
                        {select_error.map(|e| view! { <span class="field-error">{e}</span> })}
                    </label>
                    <label>"Arguments" <span class="hint">"One per line."</span>
                        <textarea id=args_name.clone() name=args_name rows="2">{s.args}</textarea>
                    </label>
                    <div class="row">
                        {input("Input file path in the VM", format!("steps[{i}].input_path"), s.input_path, &errors, Some("e.g. /workspace/in.txt"), "text")}
                        <label>"Upload the input"
                            <input type="file" id=format!("steps[{i}].input_file") name=format!("steps[{i}].input_file")/>
                        </label>
                    </div>
                    <div class="row">
                        {input("or its URL", format!("steps[{i}].input_url"), s.input_url, &errors, None, "url")}
                        {input("and its BLAKE3 checksum", format!("steps[{i}].input_checksum"), s.input_checksum, &errors, None, "text")}
                    </div>
                    {(i > 0).then(|| input("File of the previous step to pass on", format!("steps[{i}].previous_output"), s.previous_output.clone(), &errors, Some("e.g. /workspace/proof.dat"), "text"))}
                </fieldset>
            }
        })
        .collect_view();
    view! {
        <h1>"New run"</h1>
        <section class="panel">
            {errors.summary()}
            <form class="stack" id="run" method="post" action="/console/runs" enctype="multipart/form-data" data-upload="true">
                {csrf_field(&v.csrf)}
                {step_fields}
                <div class="upload-progress" hidden=true>
                    <progress value="0" max="1"></progress>
                    <output aria-live="polite"></output>
                </div>
                <div><button type="submit">"Start the run"</button></div>
            </form>
        </section>
    }
    .into_any()
}

// --- transactions --------------------------------------------------------------------------

/// The search form, as the user typed it.
#[derive(Clone, Debug, Default)]
pub struct TxQuery {
    pub hash: String,
    pub author: String,
    pub kind: String,
    pub phase: String,
    pub since: String,
    pub until: String,
}

#[derive(Clone, Debug)]
pub struct TxRow {
    pub hash: String,
    pub kind: String,
    pub author: String,
    pub parent: Option<String>,
    pub source: String,
    pub received_at_ms: i64,
}

#[derive(Clone, Debug)]
pub struct TransactionsView {
    pub query: TxQuery,
    pub items: Vec<TxRow>,
    /// The link to the next (older) page.
    pub next: Option<String>,
    pub errors: FormErrors,
}

const KINDS: [&str; 10] = [
    "run",
    "proof",
    "verification",
    "deploy",
    "cancel",
    "proofkey",
    "transfer",
    "stake",
    "unstake",
    "empty",
];

pub fn transactions(v: TransactionsView) -> impl IntoView {
    let q = v.query;
    let errors = v.errors.clone();
    let kind_options = KINDS
        .iter()
        .map(|k| view! { <option value=*k selected=q.kind == *k>{*k}</option> })
        .collect_view();
    let phase_options = Phase::ALL
        .iter()
        .map(|p| view! { <option value=p.as_str() selected=q.phase == p.as_str()>{p.as_str().replace('_', " ")}</option> })
        .collect_view();
    let table = if v.items.is_empty() {
        empty("No transactions match.").into_any()
    } else {
        view! {
            <table id="transactions">
                <thead><tr><th scope="col">"Hash"</th><th scope="col">"Kind"</th><th scope="col">"Author"</th><th scope="col">"Parent"</th><th scope="col">"Source"</th><th scope="col">"Received (UTC)"</th></tr></thead>
                <tbody>
                    {v.items.into_iter().map(|t| view! {
                        <tr>
                            <td>{tx_link(&t.hash)}</td>
                            <td>{t.kind}</td>
                            <td class="hash" title=t.author.clone()>{short(&t.author)}</td>
                            <td>{t.parent.map(|p| tx_link(&p))}</td>
                            <td>{t.source}</td>
                            <td>{time(t.received_at_ms)}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        }
        .into_any()
    };
    view! {
        <h1>"Transactions"</h1>
        {errors.summary()}
        <form class="filters panel" method="get" action="/console/transactions" role="search">
            {input("Hash or prefix", "hash".into(), q.hash, &errors, None, "search")}
            {input("Author (public key)", "author".into(), q.author, &errors, None, "search")}
            <label>"Kind"<select id="kind" name="kind"><option value="">"any"</option>{kind_options}</select></label>
            <label>"Task phase"<select id="phase" name="phase"><option value="">"any"</option>{phase_options}</select></label>
            {input("Since (UTC)", "since".into(), q.since, &errors, Some("YYYY-MM-DD or RFC 3339"), "text")}
            {input("Until (UTC)", "until".into(), q.until, &errors, None, "text")}
            <div><button type="submit">"Search"</button></div>
        </form>
        <section>{table}</section>
        <div class="pager">{v.next.map(|href| view! { <a class="button secondary" rel="next" href=href>"Older →"</a> })}</div>
    }
}

/// A task with what the pipeline knows about it now.
#[derive(Clone, Debug)]
pub struct TaskRow {
    pub task: Task,
    pub program_name: Option<String>,
    pub log_tail: Option<String>,
    /// `received of total` while downloading.
    pub progress: Option<String>,
    /// Every phase it entered, oldest first.
    pub timeline: Vec<app::model::PhaseChange>,
}

#[derive(Clone, Debug)]
pub struct OutputRow {
    pub name: String,
    pub url: String,
    pub checksum: String,
    pub size: Option<u64>,
}

/// A node of the Run → Proof → Verification tree.
#[derive(Clone, Debug)]
pub struct TreeRow {
    pub hash: String,
    pub kind: &'static str,
    pub children: Vec<TreeRow>,
}

#[derive(Clone, Debug)]
pub struct TransactionView {
    pub row: TxRow,
    /// Decoded fields, in order.
    pub fields: Vec<(String, String)>,
    pub input_json: String,
    pub tree: Option<TreeRow>,
    pub tasks: Vec<TaskRow>,
    pub outputs: Vec<OutputRow>,
    /// Shown for an unfinished Run to an operator.
    pub can_cancel: bool,
    pub csrf: String,
}

fn tree(node: TreeRow, current: String) -> AnyView {
    let here = node.hash == current;
    let children = node.children;
    view! {
        <li>
            {node.kind} " "
            {if here { view! { <strong class="hash">{short(&node.hash)}</strong> }.into_any() } else { tx_link(&node.hash).into_any() }}
            {(!children.is_empty()).then(|| view! {
                <ul>{children.into_iter().map(|c| tree(c, current.clone())).collect_view()}</ul>
            })}
        </li>
    }
    .into_any()
}

pub fn transaction(v: TransactionView) -> impl IntoView {
    let hash = v.row.hash.clone();
    let live = TransactionLive {
        hash: hash.clone(),
        tree: v.tree,
        tasks: v.tasks,
        outputs: v.outputs,
        can_cancel: v.can_cancel,
        csrf: v.csrf,
    };
    view! {
        <h1>{format!("{} ", v.row.kind)} <span class="hash">{hash.clone()}</span></h1>
        <section class="panel">
            <table>
                <tbody>
                    <tr><th scope="row">"Author"</th><td class="hash">{v.row.author.clone()}</td></tr>
                    <tr><th scope="row">"Source"</th><td>{v.row.source.clone()}</td></tr>
                    <tr><th scope="row">"Received (UTC)"</th><td>{time(v.row.received_at_ms)}</td></tr>
                    {v.row.parent.clone().map(|p| view! { <tr><th scope="row">"Parent"</th><td>{tx_link(&p)}</td></tr> })}
                    {v.fields.into_iter().map(|(k, val)| view! { <tr><th scope="row">{k}</th><td class="mono">{val}</td></tr> }).collect_view()}
                </tbody>
            </table>
        </section>
        {transaction_live(live)}
        <h2>"As submitted (JSON)"</h2>
        <pre id="input-json">{v.input_json}</pre>
    }
}

/// What changes on a transaction's page while its tasks run.
#[derive(Clone, Debug)]
pub struct TransactionLive {
    pub hash: String,
    pub tree: Option<TreeRow>,
    pub tasks: Vec<TaskRow>,
    pub outputs: Vec<OutputRow>,
    /// Shown for an unfinished Run to an operator.
    pub can_cancel: bool,
    pub csrf: String,
}

/// The cancel button, tree, tasks and outputs of a transaction (refreshed in place).
pub fn transaction_live(v: TransactionLive) -> impl IntoView {
    let TransactionLive {
        hash,
        tree: tree_row,
        tasks,
        outputs,
        can_cancel,
        csrf,
    } = v;
    let cancel = can_cancel.then(|| {
        let action = format!("/console/transactions/{hash}/cancel");
        view! {
            <form method="post" action=action class="inline">
                {csrf_field(&csrf)}
                <button type="submit" class="danger" id="cancel" data-confirm="Cancel this run? Its VMs are stopped at once.">"Cancel run"</button>
            </form>
        }
    });
    let tree_view = tree_row.map(|t| {
        view! {
            <h2>"Tree"</h2>
            <section class="panel tree"><ul>{tree(t, hash.clone())}</ul></section>
        }
    });
    let tasks_view = (!tasks.is_empty()).then(|| {
        view! {
            <h2>"Tasks"</h2>
            <table id="tasks">
                <thead><tr><th scope="col">"Step"</th><th scope="col">"Program"</th><th scope="col">"Phase"</th><th scope="col">"Attempt"</th><th scope="col">"Timeline (UTC)"</th><th scope="col">"Detail"</th></tr></thead>
                <tbody>
                    {tasks.into_iter().map(|r| {
                        let t = r.task;
                        let program = r.program_name.unwrap_or_else(|| short(&t.program.to_hex()));
                        view! {
                            <tr data-step=t.step_index>
                                <td>{t.step_index + 1} " " <span class="muted">{t.kind.as_str()}</span></td>
                                <td><a href=format!("/console/programs/{}", t.program.to_hex())>{program}</a></td>
                                <td>{phase_badge(t.phase.as_str())}</td>
                                <td>{t.attempt}</td>
                                <td>
                                    <ol class="timeline">
                                        {r.timeline.into_iter().map(|c| view! {
                                            <li title=c.note.clone().unwrap_or_default()>
                                                <span class="mono">{time(c.at_ms)}</span>" " {c.phase.as_str().replace('_', " ")}
                                            </li>
                                        }).collect_view()}
                                    </ol>
                                </td>
                                <td>
                                    {t.error.map(|e| view! { <p class="task-reason">{e}</p> })}
                                    {r.progress.map(|p| view! { <p>"downloading: " {p}</p> })}
                                    {r.log_tail.map(|l| view! { <details><summary>"VM console"</summary><pre>{l}</pre></details> })}
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        }
    });
    let outputs_view = (!outputs.is_empty()).then(|| {
        view! {
            <h2>"Output files"</h2>
            <table id="outputs">
                <thead><tr><th scope="col">"File"</th><th scope="col">"Size"</th><th scope="col">"BLAKE3"</th></tr></thead>
                <tbody>
                    {outputs.into_iter().map(|o| view! {
                        <tr>
                            <td><a href=o.url download="">{o.name}</a></td>
                            <td>{o.size.map(bytes)}</td>
                            <td class="hash" data-checksum=o.checksum.clone()>{o.checksum.clone()}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        }
    });
    view! { <div id="tx-live" data-live="true">{cancel}{tree_view}{tasks_view}{outputs_view}</div> }
}

// --- downloads -----------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct FileRow {
    pub file: OutputFile,
    pub url: String,
    pub size: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct ImageRow {
    pub program: Program,
    pub url: String,
    pub size: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct FilesView {
    pub files: Vec<FileRow>,
    pub images: Vec<ImageRow>,
    pub next: Option<String>,
}

pub fn files(v: FilesView) -> impl IntoView {
    let outputs = if v.files.is_empty() {
        empty("No output files yet.").into_any()
    } else {
        view! {
            <table id="files">
                <thead><tr><th scope="col">"File"</th><th scope="col">"Size"</th><th scope="col">"BLAKE3"</th><th scope="col">"Produced by"</th></tr></thead>
                <tbody>
                    {v.files.into_iter().map(|f| view! {
                        <tr>
                            <td><a href=f.url download="">{f.file.basename().to_string()}</a></td>
                            <td>{f.size.map(bytes)}</td>
                            <td class="hash">{f.file.checksum.to_hex()}</td>
                            <td>{f.file.kind.as_str()} " " {tx_link(&f.file.tx.to_hex())}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        }
        .into_any()
    };
    let images = if v.images.is_empty() {
        empty("No program images yet.").into_any()
    } else {
        view! {
            <table id="images">
                <thead><tr><th scope="col">"Image"</th><th scope="col">"Size"</th><th scope="col">"BLAKE3"</th><th scope="col">"Program"</th></tr></thead>
                <tbody>
                    {v.images.into_iter().map(|i| view! {
                        <tr>
                            <td>{match i.size {
                                Some(_) => view! { <a href=i.url download="">{i.program.image_file_name.clone()}</a> }.into_any(),
                                None => view! { <span>{i.program.image_file_name.clone()} <span class="muted">" (not downloaded yet)"</span></span> }.into_any(),
                            }}</td>
                            <td>{i.size.map(bytes)}</td>
                            <td class="hash">{i.program.image_file_checksum.clone()}</td>
                            <td><a href=format!("/console/programs/{}", i.program.hash.to_hex())>{i.program.name.clone()}</a></td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        }
        .into_any()
    };
    view! {
        <h1>"Downloads"</h1>
        <p class="muted">"Links are served by the node's download server and support HTTP Range requests."</p>
        <h2>"Output files"</h2>
        <section>{outputs}</section>
        <div class="pager">{v.next.map(|href| view! { <a class="button secondary" rel="next" href=href>"Older →"</a> })}</div>
        <h2>"Program images"</h2>
        <section>{images}</section>
    }
}

// --- GPUs ----------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct GpusView {
    pub gpus: Vec<GpuStatus>,
    pub can_edit: bool,
    pub csrf: String,
    pub error: Option<String>,
}

pub fn gpus(v: GpusView) -> impl IntoView {
    let csrf = v.csrf.clone();
    let can_edit = v.can_edit;
    let body = if v.gpus.is_empty() {
        empty("This host shows no GPUs (check GEVULOT_SYSFS_ROOT).").into_any()
    } else {
        v.gpus
            .into_iter()
            .map(|g| {
                let gpu = g.gpu.clone();
                let model = gpu.as_ref().map(|x| x.model()).unwrap_or_else(|| "no GPU at this address".into());
                let state = g.state.as_str();
                let reason = match &g.state {
                    PoolState::Reserved(r) | PoolState::Maintenance(r) => Some(r.clone()),
                    PoolState::Busy(t) => Some(format!("runs task {t}")),
                    _ => None,
                };
                let problems = match &g.state {
                    PoolState::NotReady(p) => p.clone(),
                    _ => gpu.as_ref().map(|x| x.problems.clone()).unwrap_or_default(),
                };
                let id = format!("gpu-{}", g.address.replace([':', '.'], "-"));
                let action = format!("/console/gpus/{}", g.address);
                let csrf = csrf.clone();
                let who = g.assignment.as_ref().map(|a| format!("last changed by {} at {}", a.updated_by, time(a.updated_at_ms)));
                view! {
                    <section class="panel" id=id aria-label=format!("GPU {}", g.address)>
                        <h2><span class="mono">{g.address.clone()}</span> " " {model} " " {phase_badge(state)}</h2>
                        {reason.map(|r| view! { <p>{r}</p> })}
                        {gpu.map(|x| view! {
                            <p class="muted">
                                "driver " {x.function.driver.clone().unwrap_or_else(|| "none".into())}
                                " · IOMMU group " {x.function.iommu_group.clone().unwrap_or_else(|| "none".into())}
                                " · NUMA node " {x.function.numa_node.map_or_else(|| "unknown".into(), |n| n.to_string())}
                            </p>
                            <table>
                                <thead><tr><th scope="col">"Function"</th><th scope="col">"Kind"</th><th scope="col">"Vendor"</th><th scope="col">"Driver"</th></tr></thead>
                                <tbody>
                                    {x.group.into_iter().map(|f| view! {
                                        <tr><td class="mono">{f.address.clone()}</td><td>{f.kind()}</td><td>{f.vendor_name()}</td><td>{f.driver.clone().unwrap_or_else(|| "none".into())}</td></tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        })}
                        {(!problems.is_empty()).then(|| view! {
                            <div class="flash error" role="alert">
                                <strong>"Not usable for passthrough:"</strong>
                                <ul class="errors">{problems.into_iter().map(|p| view! { <li>{p.message} " — fix: " <code>{p.fix}</code></li> }).collect_view()}</ul>
                            </div>
                        })}
                        {who.map(|w| view! { <p class="muted">{w}</p> })}
                        {can_edit.then(|| view! {
                            <form method="post" action=action class="inline">
                                {csrf_field(&csrf)}
                                <label class="sr-only" for=format!("{}-action", g.address)>"Change"</label>
                                <select name="action" id=format!("{}-action", g.address)>
                                    <option value="assign">"assign to the pool"</option>
                                    <option value="release">"release from the pool"</option>
                                    <option value="reserve">"reserve"</option>
                                    <option value="maintenance">"maintenance"</option>
                                </select>
                                <label class="sr-only" for=format!("{}-reason", g.address)>"Reason"</label>
                                <input name="reason" id=format!("{}-reason", g.address) placeholder="reason (for reserve and maintenance)"/>
                                <button type="submit">"Apply"</button>
                            </form>
                        })}
                    </section>
                }
            })
            .collect_view()
            .into_any()
    };
    view! {
        <h1>"GPUs"</h1>
        {v.error.map(|e| view! { <div class="flash error" role="alert">{e}</div> })}
        {(!v.can_edit).then(|| view! { <p class="muted">"Changing the pool needs the operator role."</p> })}
        {body}
    }
}

// --- account and users ---------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub created_at_ms: i64,
}

#[derive(Clone, Debug)]
pub struct AccountView {
    pub username: String,
    pub role: String,
    pub csrf: String,
    pub tokens: Vec<TokenRow>,
    /// A token just created, shown this once.
    pub new_token: Option<String>,
    pub errors: FormErrors,
}

pub fn account(v: AccountView) -> impl IntoView {
    let csrf = v.csrf.clone();
    let errors = v.errors.clone();
    view! {
        <h1>"Account"</h1>
        <p>"Signed in as " <strong>{v.username}</strong> " (" {v.role} ")."</p>
        <section class="panel">
            <h2>"Change password"</h2>
            {errors.summary()}
            <form class="stack" method="post" action="/console/account/password">
                {csrf_field(&csrf)}
                <label>"Current password"<input type="password" id="current" name="current" autocomplete="current-password" required=true/></label>
                <label>"New password" <span class="hint">{format!("At least {} characters.", app::auth::MIN_PASSWORD_LEN)}</span>
                    <input type="password" id="new" name="new" autocomplete="new-password" required=true/></label>
                <div><button type="submit">"Change password"</button></div>
            </form>
        </section>
        <section class="panel">
            <h2>"API tokens"</h2>
            {v.new_token.map(|t| view! {
                <div class="flash ok" role="status">"Your new token (shown only now): " <code id="new-token">{t}</code></div>
            })}
            {if v.tokens.is_empty() {
                empty("No API tokens.").into_any()
            } else {
                view! {
                    <table>
                        <thead><tr><th scope="col">"Name"</th><th scope="col">"Created"</th><th scope="col"></th></tr></thead>
                        <tbody>{v.tokens.into_iter().map(|t| view! {
                            <tr><td>{t.name}</td><td>{time(t.created_at_ms)}</td><td>
                                <form method="post" action=format!("/console/account/tokens/{}/delete", t.id) class="inline">
                                    {csrf_field(&csrf)}
                                    <button type="submit" class="secondary">"Delete"</button>
                                </form>
                            </td></tr>
                        }).collect_view()}</tbody>
                    </table>
                }.into_any()
            }}
            <form method="post" action="/console/account/tokens" class="inline">
                {csrf_field(&v.csrf)}
                <label for="token-name">"Name"</label>
                <input id="token-name" name="name" required=true placeholder="e.g. ci"/>
                <button type="submit">"Create token"</button>
            </form>
        </section>
    }
}

#[derive(Clone, Debug)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub role: String,
}

#[derive(Clone, Debug)]
pub struct UsersView {
    pub users: Vec<UserRow>,
    pub csrf: String,
    pub username: String,
    pub role: String,
    pub errors: FormErrors,
}

pub fn users(v: UsersView) -> impl IntoView {
    let csrf = v.csrf.clone();
    let errors = v.errors.clone();
    let role_options = |current: String| {
        ["viewer", "operator", "admin"]
            .into_iter()
            .map(move |r| view! { <option value=r selected=r == current>{r}</option> })
            .collect_view()
    };
    view! {
        <h1>"Users"</h1>
        <section class="panel">
            <table id="users">
                <thead><tr><th scope="col">"User"</th><th scope="col">"Role"</th></tr></thead>
                <tbody>{v.users.into_iter().map(|u| {
                    let csrf = csrf.clone();
                    view! {
                        <tr><td>{u.username.clone()}</td><td>
                            <form method="post" action=format!("/console/users/{}/role", u.id) class="inline">
                                {csrf_field(&csrf)}
                                <label class="sr-only" for=format!("role-{}", u.id)>{format!("Role of {}", u.username)}</label>
                                <select id=format!("role-{}", u.id) name="role">{role_options(u.role.clone())}</select>
                                <button type="submit" class="secondary">"Save"</button>
                            </form>
                        </td></tr>
                    }
                }).collect_view()}</tbody>
            </table>
        </section>
        <section class="panel">
            <h2>"Add a user"</h2>
            {errors.summary()}
            <form class="stack" method="post" action="/console/users">
                {csrf_field(&v.csrf)}
                {input("Username", "username".into(), v.username, &errors, None, "text")}
                <label>"Password" <span class="hint">{format!("At least {} characters.", app::auth::MIN_PASSWORD_LEN)}</span>
                    <input type="password" id="password" name="password" autocomplete="new-password" required=true/></label>
                <label>"Role"<select id="role" name="role">{role_options(v.role)}</select></label>
                <div><button type="submit">"Add user"</button></div>
            </form>
        </section>
    }
}

/// A page for errors the user cannot fix in a form: what happened and what to do.
pub fn problem(title: String, detail: String) -> impl IntoView {
    view! {
        <h1>{title}</h1>
        <section class="panel"><p id="problem">{detail}</p><p><a href="/console">"Back to the dashboard"</a></p></section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GPU page on the layout measured on a cloud H100 host: the GPU on the nvidia driver and
    /// no IOMMU. The operator reads both blockers with the command that fixes each.
    #[test]
    fn gpu_page_names_each_blocker_with_its_fix() {
        let root = tempfile::tempdir().expect("tmp");
        app::gpu::fixture::cloud_vm_without_iommu(root.path()).expect("fixture");
        let sysfs = app::gpu::Sysfs::new(root.path());
        let configured = vec!["0000:00:06.0".to_string()];
        let statuses = app::gpu::pool(&sysfs, &configured, &[], &Default::default()).expect("pool");
        let html = crate::fragment(move || {
            gpus(GpusView {
                gpus: statuses,
                can_edit: true,
                csrf: "t".into(),
                error: None,
            })
        });
        assert!(html.contains(r#"data-phase="not_ready""#), "{html}");
        assert!(html.contains("intel_iommu=on iommu=pt"), "{html}");
        assert!(
            html.contains("driverctl set-override 0000:00:06.0 vfio-pci"),
            "{html}"
        );
        assert!(
            html.contains(r#"action="/console/gpus/0000:00:06.0""#),
            "{html}"
        );
    }

    #[test]
    fn a_refused_form_keeps_the_input_and_marks_the_field() {
        let mut errors = FormErrors::default();
        errors.add("prover_mem_mib", "Memory must be a whole number");
        let form = DeployForm {
            name: "pair <one>".into(),
            prover: ProgramForm {
                mem_mib: "-5".into(),
                ..Default::default()
            },
            errors,
            ..Default::default()
        };
        let html = crate::fragment(move || {
            programs(ProgramsView {
                programs: vec![],
                can_deploy: true,
                csrf: "t".into(),
                form,
                max_upload: 1 << 30,
            })
        });
        assert!(html.contains(r#"value="pair &lt;one&gt;""#), "{html}");
        assert!(
            html.contains(
                r#"id="prover_mem_mib" name="prover_mem_mib" value="-5" aria-invalid="true""#
            ),
            "{html}"
        );
        assert!(html.contains("Memory must be a whole number"), "{html}");
    }
}
