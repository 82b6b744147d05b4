//! The form that starts a run.

use super::*;

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
