//! GPU inventory and pool assignments over a fixture sysfs tree with a real layout.

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::support::{Running, api_token, gevulot, output, stdout};

fn find<'a>(list: &'a Value, address: &str) -> &'a Value {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|g| g["address"] == address)
        .expect("listed")
}

#[tokio::test]
async fn inventory_and_assignments() {
    let sysfs = testkit::tempdir();
    app::gpu::fixture::workstation(sysfs.path()).expect("fixture");
    let root = sysfs.path().display().to_string();
    let node = Running::start_with(
        None,
        &[
            ("GEVULOT_SYSFS_ROOT", &root),
            ("GEVULOT_GPU_DEVICES", "0000:01:00.0"),
            ("GEVULOT_ADMIN_PASSWORD", "gpu-admin-pass"),
        ],
    );
    let c = Client::new();
    let base = &node.base;
    let list: Value = c
        .get(format!("{base}/api/v1/gpus"))
        .send()
        .await
        .expect("gpus")
        .json()
        .await
        .expect("json");
    let rtx = find(&list, "0000:01:00.0");
    assert_eq!(rtx["in_pool"], true);
    assert_eq!(rtx["state"], "not_ready");
    assert_eq!(rtx["iommu_group"], "12");
    assert_eq!(rtx["numa_node"], 0);
    let members: Vec<&str> = rtx["group"]
        .as_array()
        .expect("group")
        .iter()
        .map(|f| f["address"].as_str().expect("a"))
        .collect();
    assert_eq!(members, ["0000:01:00.0", "0000:01:00.1", "0000:01:00.2"]);
    // Named as operators know them, from the PCI ID database.
    assert_eq!(rtx["model"], "NVIDIA GeForce RTX 4090");
    assert_eq!(
        rtx["group"][1]["name"],
        "AD102 High Definition Audio Controller"
    );
    assert_eq!(
        find(&list, "0000:02:00.0")["model"],
        "NVIDIA H100 SXM5 80GB"
    );
    assert_eq!(
        rtx["problems"][0]["fix"],
        "sudo driverctl set-override 0000:01:00.2 vfio-pci"
    );
    assert_eq!(find(&list, "0000:02:00.0")["state"], "not_in_pool");

    // Changing the pool needs an operator.
    let url = format!("{base}/api/v1/gpus/0000:02:00.0");
    let r = c
        .put(&url)
        .json(&json!({"action": "assign"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let t = api_token(&c, base, "admin", "gpu-admin-pass").await;
    let r = c
        .put(&url)
        .bearer_auth(&t)
        .json(&json!({"action": "assign"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::OK);
    let gpu: Value = r.json().await.expect("json");
    assert_eq!(
        (gpu["in_pool"].clone(), gpu["state"].clone()),
        (json!(true), json!("not_ready")),
        "its group has a NIC on igb"
    );
    assert_eq!(gpu["updated_by"], "admin");
    let r = c
        .put(&url)
        .bearer_auth(&t)
        .json(&json!({"action": "reserve"}))
        .send()
        .await
        .expect("put");
    assert_eq!(
        r.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "a reservation needs a reason"
    );
    let r = c
        .put(&url)
        .bearer_auth(&t)
        .json(&json!({"action": "release"}))
        .send()
        .await
        .expect("put");
    assert_eq!(
        r.json::<Value>().await.expect("json")["state"],
        "not_in_pool"
    );
    let r = c
        .put(format!("{base}/api/v1/gpus/0000:09:00.0"))
        .bearer_auth(&t)
        .json(&json!({"action": "assign"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .put(&url)
        .bearer_auth(&t)
        .json(&json!({"action": "borrow"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Bind the USB function to vfio-pci in the fixture, then reserve the now-ready GPU.
    app::gpu::fixture::bind(sysfs.path(), "0000:01:00.2", "vfio-pci").expect("bind");
    let list: Value = c
        .get(format!("{base}/api/v1/gpus"))
        .send()
        .await
        .expect("gpus")
        .json()
        .await
        .expect("json");
    assert_eq!(find(&list, "0000:01:00.0")["state"], "free");
    let r = c
        .put(format!("{base}/api/v1/gpus/0000:01:00.0"))
        .bearer_auth(&t)
        .json(&json!({"action": "maintenance", "reason": "fan replacement"}))
        .send()
        .await
        .expect("put");
    let gpu: Value = r.json().await.expect("json");
    assert_eq!(
        (gpu["state"].clone(), gpu["reason"].clone()),
        (json!("maintenance"), json!("fan replacement"))
    );

    // The command prints the same inventory without a database.
    let out = output(gevulot().args([
        "gpus",
        "--sysfs-root",
        &root,
        "--gpu-devices",
        "0000:01:00.0",
    ]));
    let items: Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(items.as_array().expect("items").len(), 3);
    assert_eq!(items[0]["state"], "free");
}

#[test]
fn doctor_reports_each_failure_with_its_fix() {
    let root = testkit::tempdir();
    app::gpu::fixture::workstation(root.path()).expect("fixture");
    let write = |rel: &str, text: &str| {
        let p = root.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write(
        "etc/passwd",
        "gevulot:x:64000:64000::/nonexistent:/usr/sbin/nologin\n",
    );
    write("etc/group", "kvm:x:993:\n");
    write("dev/kvm", "");
    let data = testkit::tempdir();
    let out = output(gevulot().args([
        "doctor",
        "--json",
        "--as-user",
        "gevulot",
        "--host-root",
        &root.path().display().to_string(),
        "--gpu-devices",
        "0000:01:00.0,0000:02:00.0",
        "--qemu-path",
        "/nonexistent/qemu",
        "--vsock-daemon",
        "/nonexistent/vhost-device-vsock",
        "--data-directory",
        &data.path().display().to_string(),
    ]));
    assert!(!out.status.success(), "failures give a non-zero exit");
    let report: Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(report["ok"], false);
    let checks = report["checks"].as_array().expect("checks");
    let fixes: Vec<&str> = checks.iter().filter_map(|c| c["fix"].as_str()).collect();
    for expected in [
        "usermod -aG kvm gevulot",
        "modprobe vhost_vsock",
        "driverctl set-override 0000:01:00.2 vfio-pci",
        "driverctl set-override 0000:04:00.0 vfio-pci",
        "apt-get install qemu-system-x86",
    ] {
        assert!(
            fixes.iter().any(|f| f.contains(expected)),
            "no fix with {expected:?} in {fixes:#?}"
        );
    }
    let db = checks
        .iter()
        .find(|c| c["name"] == "database")
        .expect("database check");
    assert_eq!(db["status"], "pass", "{db}");
    // The human form says the same, with the fixes.
    let text = output(gevulot().args([
        "doctor",
        "--as-user",
        "gevulot",
        "--host-root",
        &root.path().display().to_string(),
        "--data-directory",
        &data.path().display().to_string(),
    ]));
    assert!(stdout(&text).contains("FAIL  kvm"), "{}", stdout(&text));
    assert!(stdout(&text).contains("fix: "));
}
