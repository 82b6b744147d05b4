//! Operator actions signed by the node: uploads streamed and hashed by the node, deploy and run
//! through REST, output files, offered resources.

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::support::{Running, api_token};

const ADMIN: (&str, &str) = ("admin", "operator-actions-pw");

#[tokio::test]
async fn upload_deploy_run_and_files() {
    let node = Running::start_with(
        None,
        &[
            ("GEVULOT_ADMIN_PASSWORD", ADMIN.1),
            ("GEVULOT_CPUS", "3"),
            ("GEVULOT_MEM_GB", "2"),
        ],
    );
    let c = Client::new();
    let base = node.base.clone();
    let t = api_token(&c, &base, ADMIN.0, ADMIN.1).await;

    // Uploads need an operator.
    let r = c
        .post(format!("{base}/api/v1/uploads?name=prover.img"))
        .body("x")
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let image: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let r = c
        .post(format!("{base}/api/v1/uploads?name=prover.img"))
        .bearer_auth(&t)
        .body(image.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), StatusCode::CREATED);
    let up: Value = r.json().await.expect("json");
    let checksum = blake3::hash(&image).to_hex().to_string();
    assert_eq!(
        up["checksum"],
        checksum.as_str(),
        "the node computes the checksum"
    );
    assert_eq!(up["size"], image.len());
    // The upload is served, whole and by range, at the URL the node hands out.
    let served = c
        .get(up["url"].as_str().expect("url"))
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(served.as_ref(), image.as_slice());
    let again = c
        .post(format!("{base}/api/v1/uploads?name=prover.img"))
        .bearer_auth(&t)
        .body(image.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(again.status(), StatusCode::OK);
    let bad = c
        .post(format!("{base}/api/v1/uploads?name=../x"))
        .bearer_auth(&t)
        .body("x")
        .send()
        .await
        .expect("upload");
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let input = b"input file contents".to_vec();
    let r = c
        .post(format!("{base}/api/v1/uploads?name=in.txt"))
        .bearer_auth(&t)
        .body(input.clone())
        .send()
        .await
        .expect("upload");
    let input_up: Value = r.json().await.expect("json");

    // Deploy: one image uploaded, one by URL.
    let deploy = json!({
        "name": "pair",
        "prover": {"name": "prover", "upload": checksum, "image_file_name": "prover.img", "resources": {"mem_mib": 512, "cpus": 1, "gpus": 0}},
        "verifier": {"name": "verifier", "image_url": "http://127.0.0.1:1/verifier.img", "image_checksum": "ab".repeat(32)},
    });
    let r = c
        .post(format!("{base}/api/v1/programs"))
        .bearer_auth(&t)
        .json(&deploy)
        .send()
        .await
        .expect("deploy");
    assert_eq!(r.status(), StatusCode::CREATED);
    let deployed: Value = r.json().await.expect("json");
    let prover = deployed["prover"].as_str().expect("prover").to_string();
    let verifier = deployed["verifier"].as_str().expect("verifier").to_string();
    let program: Value = c
        .get(format!("{base}/api/v1/programs/{prover}"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(program["image_file_checksum"], checksum.as_str());
    assert_eq!(program["image_file_url"], up["url"]);
    let info: Value = c
        .get(format!("{base}/api/v1/node"))
        .send()
        .await
        .expect("node")
        .json()
        .await
        .expect("json");
    let tx: Value = c
        .get(format!(
            "{base}/api/v1/transactions/{}",
            deployed["hash"].as_str().expect("hash")
        ))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(tx["author"], info["public_key"], "signed by the node's key");

    let unknown = json!({"name": "x", "prover": {"name": "p", "upload": "cd".repeat(32), "image_file_name": "p.img"}, "verifier": {"name": "v", "upload": "cd".repeat(32), "image_file_name": "v.img"}});
    let r = c
        .post(format!("{base}/api/v1/programs"))
        .bearer_auth(&t)
        .json(&unknown)
        .send()
        .await
        .expect("deploy");
    assert_eq!(
        r.json::<Value>().await.expect("json")["code"],
        "unknown_upload"
    );

    // Run: an uploaded input, then the prover's output for the verifier.
    let run = json!({"steps": [
        {"program": prover, "args": ["--n", "1"], "inputs": [{"file_name": "/workspace/in.txt", "upload": input_up["checksum"], "upload_name": "in.txt"}]},
        {"program": verifier, "inputs": [{"file_name": "/workspace/proof.dat", "from_program": prover}]},
    ]});
    let r = c
        .post(format!("{base}/api/v1/runs"))
        .bearer_auth(&t)
        .json(&run)
        .send()
        .await
        .expect("run");
    assert_eq!(r.status(), StatusCode::CREATED);
    let run_hash = r.json::<Value>().await.expect("json")["hash"]
        .as_str()
        .expect("hash")
        .to_string();
    let stored: Value = c
        .get(format!("{base}/api/v1/transactions/{run_hash}"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let steps = &stored["input_form"]["payload"]["Run"]["workflow"]["steps"];
    assert_eq!(
        steps[0]["inputs"][0]["Input"]["checksum"],
        input_up["checksum"]
    );
    assert_eq!(
        steps[1]["inputs"][0]["Output"]["file_name"],
        "/workspace/proof.dat"
    );
    // Bad runs are refused with the rule that failed.
    let twice = json!({"steps": [{"program": prover}, {"program": prover}]});
    let r = c
        .post(format!("{base}/api/v1/runs"))
        .bearer_auth(&t)
        .json(&twice)
        .send()
        .await
        .expect("run");
    assert_eq!(
        r.json::<Value>().await.expect("json")["code"],
        "duplicate_program"
    );
    let ambiguous =
        json!({"steps": [{"program": prover, "inputs": [{"file_name": "/workspace/x"}]}]});
    let r = c
        .post(format!("{base}/api/v1/runs"))
        .bearer_auth(&t)
        .json(&ambiguous)
        .send()
        .await
        .expect("run");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Output files: the fixture proof carries one; its metadata and download URL.
    for name in ["proof"] {
        let v = testkit::vector(name);
        c.post(format!("{base}/api/v1/transactions"))
            .header("content-type", "application/json")
            .body(v["input_json"].as_str().expect("json").to_string())
            .send()
            .await
            .expect("submit");
    }
    let files: Value = c
        .get(format!("{base}/api/v1/files"))
        .send()
        .await
        .expect("files")
        .json()
        .await
        .expect("json");
    let file = &files["items"][0];
    assert_eq!(file["vm_path"], "/workspace/proof.dat");
    assert_eq!(file["tx_kind"], "proof");
    // A client submitted this Proof; its file is not here, so the list names the producer's
    // server, the base signed into the transaction.
    assert_eq!(
        file["url"],
        format!(
            "http://127.0.0.1:9995/txfiles/{}/{}/proof.dat",
            file["tx"].as_str().expect("tx"),
            file["checksum"].as_str().expect("checksum")
        )
    );
    assert_eq!(file["size"], Value::Null);
    let one: Value = c
        .get(format!(
            "{base}/api/v1/files/{}/0",
            file["tx"].as_str().expect("tx")
        ))
        .send()
        .await
        .expect("file")
        .json()
        .await
        .expect("json");
    assert_eq!(one["checksum"], file["checksum"]);
    let r = c
        .get(format!(
            "{base}/api/v1/files/{}/9",
            file["tx"].as_str().expect("tx")
        ))
        .send()
        .await
        .expect("file");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .get(format!("{base}/api/v1/files?cursor=nope"))
        .send()
        .await
        .expect("files");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let resources: Value = c
        .get(format!("{base}/api/v1/node/resources"))
        .send()
        .await
        .expect("resources")
        .json()
        .await
        .expect("json");
    assert_eq!(resources["cpus"], 3);
    assert_eq!(resources["mem_mib"], 2048);
    assert_eq!(resources["gpu_devices"], json!([]));
    assert_eq!(resources["execution"], true);
    // What is free depends on how far the pipeline got with the run above.
    let usage = &resources["usage"];
    assert!(
        usage["free_cpus"].as_u64().is_some_and(|c| c <= 3),
        "{usage}"
    );
    assert!(
        usage["free_mem_mib"].as_u64().is_some_and(|m| m <= 2048),
        "{usage}"
    );
    for field in ["free_gpus", "running_tasks", "waiting_tasks"] {
        assert!(usage[field].is_u64(), "{field} in {usage}");
    }
}
