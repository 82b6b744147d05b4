//! Transaction search, and one transaction with its tree, tasks and outputs.

use super::*;

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
    /// Where a Run is placed in the network, in a sentence.
    pub placement: Option<String>,
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
        placement: v.placement,
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
    /// Where a Run is placed in the network, in a sentence.
    pub placement: Option<String>,
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
        placement,
        csrf,
    } = v;
    let placement =
        placement.map(|p| view! { <p id="placement"><strong>"Placement: "</strong>{p}</p> });
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
    view! { <div id="tx-live" data-live="true">{cancel}{placement}{tree_view}{tasks_view}{outputs_view}</div> }
}
