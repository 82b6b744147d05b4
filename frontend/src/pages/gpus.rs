//! The GPU pool.

use super::*;

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
