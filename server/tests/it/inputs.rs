//! Outside input the node parses beyond JSON, fuzzed through a running node: multipart console
//! forms (any parts, names, file names and contents, broken framing) and `Range` headers on the
//! file server (any text). Never a 5xx, nothing stored for a forged form, every stored upload a
//! plain file under its checksum, every range answered exactly. Bounded: a few hundred cases.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::support::{Running, UNLIMITED, api_token, sign_in};

const PASSWORD: &str = "inputs-Pa55word-xyz";

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// One part of a console form.
#[derive(Debug, Clone)]
enum Part {
    Text {
        name: String,
        value: String,
    },
    File {
        name: String,
        file_name: String,
        content: Vec<u8>,
    },
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("step0_program".to_string()),
        Just("step0_args".to_string()),
        Just("prover_image".to_string()),
        Just("prover_name".to_string()),
        Just("name".to_string()),
        "[a-z_0-9]{1,20}",
        "\\PC{0,30}",
    ]
}

fn part() -> impl Strategy<Value = Part> {
    prop_oneof![
        (field_name(), "\\PC{0,60}").prop_map(|(name, value)| Part::Text { name, value }),
        (
            field_name(),
            prop_oneof![
                "[a-z]{1,8}\\.img",
                "\\PC{0,40}",
                Just("../../etc/passwd".to_string()),
                Just("C:\\\\x\\\\..\\\\y.bin".to_string()),
                Just(".hidden".to_string()),
            ],
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(name, file_name, content)| Part::File {
                name,
                file_name,
                content,
            }),
    ]
}

/// A form: where the CSRF token goes (first, later, never, or wrong), its parts, and how its
/// framing is broken (cut short, or not at all).
#[derive(Debug, Clone)]
struct Form {
    csrf: u8,
    parts: Vec<Part>,
    cut: Option<usize>,
    path: &'static str,
}

fn form() -> impl Strategy<Value = Form> {
    (
        0u8..4,
        proptest::collection::vec(part(), 0..6),
        proptest::option::of(0usize..2000),
        prop_oneof![Just("/console/runs"), Just("/console/programs")],
    )
        .prop_map(|(csrf, parts, cut, path)| Form {
            csrf,
            parts,
            cut,
            path,
        })
}

fn quoted(text: &str) -> String {
    text.replace(['"', '\r', '\n'], "_")
}

fn body(form: &Form, csrf: &str, boundary: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let text = |out: &mut Vec<u8>, name: &str, value: &str| {
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{value}\r\n",
                quoted(name)
            )
            .as_bytes(),
        );
    };
    match form.csrf {
        0 => text(&mut out, "csrf", csrf),
        1 => text(&mut out, "csrf", "forged"),
        _ => {}
    }
    for p in &form.parts {
        match p {
            Part::Text { name, value } => text(&mut out, name, value),
            Part::File {
                name,
                file_name,
                content,
            } => {
                out.extend_from_slice(
                    format!(
                        "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                        quoted(name),
                        quoted(file_name)
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(content);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    if form.csrf == 2 {
        text(&mut out, "csrf", csrf);
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    if let Some(cut) = form.cut {
        out.truncate(cut.min(out.len()));
    }
    out
}

/// Every upload stored: `txfiles/<64 hex>/<plain name>`, a regular file.
fn uploads(data: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(sums) = std::fs::read_dir(data.join("txfiles")) else {
        return found;
    };
    for sum in sums.map_while(Result::ok) {
        let sum_name = sum.file_name().to_string_lossy().into_owned();
        assert!(
            sum_name.len() == 64 && sum_name.bytes().all(|b| b.is_ascii_hexdigit()),
            "{sum_name}"
        );
        for file in std::fs::read_dir(sum.path())
            .expect("dir")
            .map_while(Result::ok)
        {
            let meta = std::fs::symlink_metadata(file.path()).expect("meta");
            assert!(meta.is_file(), "{} is a plain file", file.path().display());
            let name = file.file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with('.') && !name.contains(['/', '\\']),
                "{name}"
            );
            found.push(format!("{sum_name}/{name}"));
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_multipart_form_and_any_range_header() {
    let mut env = UNLIMITED.to_vec();
    env.extend([
        ("GEVULOT_ADMIN_PASSWORD", PASSWORD),
        ("GEVULOT_NODE_NO_EXECUTION", "true"),
    ]);
    let node = Running::start_with(None, &env);
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let (cookie, csrf) = sign_in(&c, &node.base, "admin", PASSWORD).await;
    let rt = tokio::runtime::Handle::current();

    // Multipart console forms.
    let (base, data) = (node.base.clone(), node.data.path().to_path_buf());
    let forms = {
        let (c, cookie, csrf) = (c.clone(), cookie.clone(), csrf.clone());
        tokio::task::spawn_blocking(move || {
            runner(160).run(&form(), |form| {
                let boundary = "fuzzboundary7MA4YWxkTrZu0gW";
                let before = uploads(&data);
                let status = rt.block_on(async {
                    c.post(format!("{base}{}", form.path))
                        .header("cookie", &cookie)
                        .header(
                            "content-type",
                            format!("multipart/form-data; boundary={boundary}"),
                        )
                        .body(body(&form, &csrf, boundary))
                        .send()
                        .await
                        .expect("the node answers")
                        .status()
                        .as_u16()
                });
                prop_assert!(
                    matches!(status, 200 | 303 | 400 | 403 | 413 | 422),
                    "status {} for {:?}",
                    status,
                    form
                );
                let after = uploads(&data);
                if form.csrf != 0 {
                    prop_assert_eq!(
                        &before,
                        &after,
                        "a form without its token first stored files"
                    );
                }
                Ok(())
            })
        })
        .await
        .expect("forms")
    };
    forms.unwrap_or_else(|e| panic!("{e}"));
    let stored = uploads(node.data.path());
    println!("{} uploads stored by the forms: {stored:?}", stored.len());
    assert!(
        !stored.is_empty(),
        "no form stored a file: the cases never reached the upload path"
    );

    // Range headers on the file server, against a file of known content.
    let token = api_token(&c, &node.base, "admin", PASSWORD).await;
    let content: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
    let up: serde_json::Value = c
        .post(format!("{}/api/v1/uploads?name=range.bin", node.base))
        .bearer_auth(&token)
        .body(content.clone())
        .send()
        .await
        .expect("upload")
        .json()
        .await
        .expect("json");
    let url = up["url"].as_str().expect("url").to_string();
    let range = prop_oneof![
        (0u64..1200, 0u64..1200).prop_map(|(a, b)| format!("bytes={a}-{b}")),
        (0u64..1200).prop_map(|a| format!("bytes={a}-")),
        (0u64..1200).prop_map(|n| format!("bytes=-{n}")),
        (0u64..1000, 0u64..1000, 0u64..1000).prop_map(|(a, b, d)| format!("bytes={a}-{b},{d}-")),
        "\\PC{0,40}",
        "bytes=[-0-9, ]{0,20}",
    ];
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        runner(200)
            .run(&range, |header| {
                let (status, content_range, body) = rt.block_on(async {
                    let r = c
                        .get(&url)
                        .header("range", &header)
                        .send()
                        .await
                        .expect("the file server answers");
                    let status = r.status().as_u16();
                    let content_range = r
                        .headers()
                        .get("content-range")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    (
                        status,
                        content_range,
                        r.bytes().await.expect("body").to_vec(),
                    )
                });
                match status {
                    200 => prop_assert_eq!(&body, &content),
                    206 => {
                        let cr = content_range.expect("Content-Range on a 206");
                        let spec = cr.strip_prefix("bytes ").expect("bytes unit");
                        let (span, total) = spec.split_once('/').expect("total");
                        prop_assert_eq!(total, "1000");
                        let (s, e) = span.split_once('-').expect("span");
                        let (s, e): (usize, usize) =
                            (s.parse().expect("start"), e.parse().expect("end"));
                        prop_assert!(s <= e && e < 1000, "{}", cr);
                        prop_assert_eq!(&body[..], &content[s..=e], "{}", header);
                    }
                    416 => {}
                    other => prop_assert!(false, "status {} for Range {:?}", other, header),
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
    })
    .await
    .expect("ranges");

    // The node is still ready.
    let ready = reqwest::get(format!("http://{}/readyz", node.health))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
}
