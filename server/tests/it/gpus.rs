//! GPU inventory and pool assignments over a fixture sysfs tree with a real layout.

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::process::{Running, gevulot, output, stdout};

async fn operator_token(c: &Client, base: &str) -> String {
    let r = c
        .post(format!("{base}/api/v1/session"))
        .json(&json!({"username": "admin", "password": "gpu-admin-pass"}))
        .send()
        .await
        .expect("login");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_string();
    let csrf = r.json::<Value>().await.expect("json")["csrf_token"]
        .as_str()
        .expect("csrf")
        .to_string();
    let t: Value = c
        .post(format!("{base}/api/v1/tokens"))
        .header("cookie", cookie)
        .header("x-csrf-token", csrf)
        .json(&json!({"name": "gpu"}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    t["token"].as_str().expect("token").to_string()
}

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
    let t = operator_token(&c, base).await;
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
    let usb = sysfs.path().join("sys/bus/pci/devices/0000:01:00.2/driver");
    std::fs::remove_file(&usb).expect("unbind");
    std::os::unix::fs::symlink(sysfs.path().join("sys/bus/pci/drivers/vfio-pci"), &usb)
        .expect("bind");
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
