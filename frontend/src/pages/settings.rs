//! Settings: the node's version, its data directory and what each area of it holds, and the
//! effective configuration (secrets shown only as set).

use super::*;

#[derive(Clone, Debug)]
pub struct SettingsView {
    pub version: String,
    pub data_directory: String,
    /// Size, free space and the floor of the data directory's filesystem.
    pub filesystem: Option<(u64, u64, u64)>,
    pub areas: Vec<AreaRow>,
    pub settings: Vec<SettingRow>,
}

#[derive(Clone, Debug)]
pub struct AreaRow {
    pub area: String,
    pub path: String,
    pub bytes: u64,
    pub files: u64,
}

#[derive(Clone, Debug)]
pub struct SettingRow {
    pub name: String,
    /// `None` when unset; `set` for a secret that is.
    pub value: Option<String>,
    pub source: String,
    pub help: String,
}

pub fn settings(v: SettingsView) -> impl IntoView {
    let filesystem = v.filesystem.map(|(size, free, floor)| {
        view! {
            <p id="filesystem">{bytes(free)} " free of " {bytes(size)} " · floor " {bytes(floor)} " (GEVULOT_MIN_FREE_MB)"</p>
        }
    });
    view! {
        <h1>"Settings"</h1>
        <section class="panel" aria-labelledby="version-h">
            <h2 id="version-h">"Version"</h2>
            <p id="version">{v.version}</p>
        </section>
        <section class="panel" aria-labelledby="data-h">
            <h2 id="data-h">"Data directory"</h2>
            <p><code id="data-directory">{v.data_directory}</code></p>
            {filesystem}
            <table id="areas">
                <thead><tr><th scope="col">"Area"</th><th scope="col">"Path"</th><th scope="col">"Size"</th><th scope="col">"Files"</th></tr></thead>
                <tbody>
                    {v.areas.into_iter().map(|a| {
                        let key = a.area.clone();
                        view! {
                        <tr data-area=key>
                            <td>{a.area}</td>
                            <td class="mono">{a.path}</td>
                            <td>{bytes(a.bytes)}</td>
                            <td>{a.files}</td>
                        </tr>
                    }}).collect_view()}
                </tbody>
            </table>
        </section>
        <section class="panel" aria-labelledby="config-h">
            <h2 id="config-h">"Configuration"</h2>
            <p class="muted">"Set by environment variables or flags (`gevulot run -h`); a change takes effect when the node restarts. Secrets show only whether they are set."</p>
            <table id="settings">
                <thead><tr><th scope="col">"Setting"</th><th scope="col">"Value"</th><th scope="col">"From"</th></tr></thead>
                <tbody>
                    {v.settings.into_iter().map(|s| {
                        let value = s.value.unwrap_or_else(|| "unset".to_string());
                        let key = s.name.clone();
                        view! {
                            <tr data-setting=key>
                                <td><code title=s.help>{s.name}</code></td>
                                <td class="mono">{value}</td>
                                <td class="muted">{s.source}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}
