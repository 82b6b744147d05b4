//! The pages, each a function from its view model to HTML. Forms post to the server as plain
//! HTML forms (`application/x-www-form-urlencoded`, or `multipart/form-data` for uploads) with the
//! session's CSRF token; a refused form comes back with the user's input and a message at each
//! field that needs a change.

pub(crate) use app::gpu::{GpuStatus, PoolState};
pub(crate) use app::model::{OutputFile, Phase, Program, Task};
pub(crate) use leptos::prelude::*;

pub(crate) use crate::{bytes, short, time};

mod account;
mod audit;
mod dashboard;
mod files;
mod gpus;
mod network;
mod programs;
mod runs;
mod settings;
mod sign_in;
mod transactions;
mod users;
mod webhooks;

pub use account::*;
pub use audit::*;
pub use dashboard::*;
pub use files::*;
pub use gpus::*;
pub use network::*;
pub use programs::*;
pub use runs::*;
pub use settings::*;
pub use sign_in::*;
pub use transactions::*;
pub use users::*;
pub use webhooks::*;

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
pub(crate) fn input(
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

pub(crate) fn csrf_field(csrf: &str) -> impl IntoView + use<> {
    view! { <input type="hidden" name="csrf" value=csrf.to_string()/> }
}

pub(crate) fn phase_badge(phase: &str) -> impl IntoView + use<> {
    let class = format!("phase {phase}");
    let text = phase.replace('_', " ");
    view! { <span class=class data-phase=phase.to_string()>{text}</span> }
}

pub(crate) fn tx_link(hex: &str) -> impl IntoView + use<> {
    let href = format!("/console/transactions/{hex}");
    view! { <a class="hash" href=href title=hex.to_string()>{short(hex)}</a> }
}

pub(crate) fn empty(text: &'static str) -> impl IntoView {
    view! { <p class="empty">{text}</p> }
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
