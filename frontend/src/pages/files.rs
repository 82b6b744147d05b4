//! Downloads: output files and program images.

use super::*;

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
