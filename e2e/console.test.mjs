// The operator console in a real browser (Debian's Chromium driven by playwright-core) against
// a real `gevulot run` that `server/tests/it/console.rs` starts and prepares: it passes the
// node's address, the admin password, the program images, an input file, a GPU of its fixture
// sysfs tree and a folder for artifacts (screenshots, downloads, result.json) in GEVULOT_E2E_*.
// The key flows run twice: with JavaScript (live updates, upload progress) and without it.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set; server/tests/it/console.rs runs this file`);
  return value;
};
const base = env("GEVULOT_E2E_BASE");
const adminPassword = env("GEVULOT_E2E_ADMIN_PASSWORD");
const proverImage = env("GEVULOT_E2E_PROVER");
const verifierImage = env("GEVULOT_E2E_VERIFIER");
const inputFile = env("GEVULOT_E2E_INPUT");
const gpu = env("GEVULOT_E2E_GPU");
const out = env("GEVULOT_E2E_OUT");
mkdirSync(out, { recursive: true });
const results = { downloads: [] };

const browser = await chromium.launch({
  executablePath: process.env.GEVULOT_E2E_CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
  ],
});

const VM_TIMEOUT = 240_000;

async function shot(page, name) {
  await page.screenshot({ path: join(out, `${name}.png`), fullPage: true });
}

async function signIn(page, user, password) {
  await page.goto(`${base}/console`);
  assert.match(page.url(), /\/console\/sign-in/);
  await page.fill("#username", user);
  await page.fill("#password", password);
  await Promise.all([page.waitForURL(/\/console(\?|$|\/$)/), page.click("button[type=submit]")]);
}

async function signOut(page) {
  await Promise.all([page.waitForURL(/sign-in/), page.click("header form button[type=submit]")]);
}

/// Waits until every task of the transaction page is in one of `phases`. With JavaScript the
/// page must change by itself (live updates); without, it is reloaded.
async function waitForPhases(page, js, phases, count) {
  const deadline = Date.now() + VM_TIMEOUT;
  const selector = phases.map((p) => `#tasks [data-phase="${p}"]`).join(", ");
  for (;;) {
    const n = await page.locator(selector).count();
    if (n >= count) return;
    if (Date.now() > deadline) {
      await shot(page, `timeout-${phases.join("-")}`);
      assert.fail(`tasks not ${phases.join("/")} within ${VM_TIMEOUT} ms: ${await page.locator("#tasks").innerText().catch(() => "no tasks")}`);
    }
    if (js) {
      await page.waitForTimeout(300);
    } else {
      await page.waitForTimeout(1000);
      await page.reload();
    }
  }
}

async function flows(js) {
  const tag = js ? "js" : "nojs";
  const context = await browser.newContext({ javaScriptEnabled: js, acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on("dialog", (dialog) => dialog.accept());

  // A wrong password is refused and says so.
  await page.goto(`${base}/console`);
  await page.fill("#username", "admin");
  await page.fill("#password", "not the password");
  await page.click("button[type=submit]");
  assert.match(await page.locator("#sign-in-error").innerText(), /Wrong username or password/);
  assert.equal(await page.inputValue("#username"), "admin", "the username is kept");
  await shot(page, `${tag}-sign-in-refused`);

  await signIn(page, "admin", adminPassword);
  await page.waitForSelector("#dashboard-live");
  await shot(page, `${tag}-dashboard`);

  // A viewer, for the role check below.
  const viewer = `viewer-${tag}`;
  await page.goto(`${base}/console/users`);
  await page.fill("#username", viewer);
  await page.fill("#password", "viewer-password-1");
  await page.selectOption("#role", "viewer");
  await Promise.all([page.waitForURL(/\/console\/users$/), page.click("form[action='/console/users'] button[type=submit]")]);
  assert.match(await page.locator(".flash.ok").innerText(), new RegExp(`${viewer} can sign in now`));
  await shot(page, `${tag}-users`);

  // A bad form: precise messages at the fields, and the user's input kept.
  await page.goto(`${base}/console/programs`);
  await page.fill("#name", `pair-${tag}`);
  await page.fill("#prover_name", `prover-${tag}`);
  await page.fill("#prover_mem_mib", "-5");
  await page.click("#deploy button[type=submit]");
  await page.waitForSelector("#form-errors");
  const errors = await page.locator("#form-errors").innerText();
  assert.match(errors, /Upload the prover's image, or give its URL/);
  assert.match(errors, /Memory must be a whole number/);
  assert.match(errors, /Name the verifier program/);
  assert.equal(await page.inputValue("#name"), `pair-${tag}`);
  assert.equal(await page.inputValue("#prover_name"), `prover-${tag}`);
  assert.equal(await page.inputValue("#prover_mem_mib"), "-5");
  assert.equal(await page.getAttribute("#prover_mem_mib", "aria-invalid"), "true");
  await shot(page, `${tag}-deploy-refused`);

  // Deploy the test programs by upload.
  await page.fill("#prover_mem_mib", "512");
  await page.fill("#prover_cpus", "1");
  await page.fill("#verifier_name", `verifier-${tag}`);
  await page.fill("#verifier_mem_mib", "512");
  await page.fill("#verifier_cpus", "1");
  await page.setInputFiles("#prover_image", proverImage);
  await page.setInputFiles("#verifier_image", verifierImage);
  await Promise.all([page.waitForURL(/\/console\/programs\/[0-9a-f]{64}$/), page.click("#deploy button[type=submit]")]);
  assert.match(await page.locator(".flash.ok").innerText(), /Deployed/);
  await shot(page, `${tag}-program`);
  await page.goto(`${base}/console/programs`);
  assert.ok(await page.locator(`#programs >> text=prover-${tag}`).count());
  await shot(page, `${tag}-programs`);

  // Start a run: the prover on an uploaded input, then the verifier on its proof.
  async function choose(select, name) {
    const value = await page.locator(`${select} option`, { hasText: new RegExp(`^${name} \\(`) }).getAttribute("value");
    await page.selectOption(select, value);
  }

  async function startRun(args) {
    await page.goto(`${base}/console/runs/new`);
    await choose("#steps\\[0\\]\\.program", `prover-${tag}`);
    await page.fill("#steps\\[0\\]\\.args", args);
    await page.fill("#steps\\[0\\]\\.input_path", "/workspace/in.txt");
    await page.setInputFiles("#steps\\[0\\]\\.input_file", inputFile);
    await choose("#steps\\[1\\]\\.program", `verifier-${tag}`);
    await page.fill("#steps\\[1\\]\\.previous_output", "/workspace/proof.dat");
    await shot(page, `${tag}-new-run`);
    await Promise.all([page.waitForURL(/\/console\/transactions\/[0-9a-f]{64}$/), page.click("#run button[type=submit]")]);
    return page.url();
  }

  const first = await startRun("--nonce\n1");
  if (js) {
    await page.waitForSelector("body[data-live-connected=true]");
    await page.evaluate(() => { window.__sameDocument = true; });
  }
  await waitForPhases(page, js, ["succeeded"], 2);
  if (js) {
    assert.equal(await page.evaluate(() => window.__sameDocument), true, "the phases changed without a reload");
  }
  await shot(page, `${tag}-run-succeeded`);

  // Download the proof and note the checksum the page shows (the test runner checks the file).
  const link = page.locator("#outputs a").first();
  const checksum = await page.locator("#outputs [data-checksum]").first().getAttribute("data-checksum");
  const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
  const saved = join(out, `${tag}-${download.suggestedFilename()}`);
  await download.saveAs(saved);
  results.downloads.push({ file: saved, checksum });

  // Cancel a second, long run while it is under way.
  const second = await startRun("--sleep-ms\n600000");
  assert.notEqual(first, second);
  await waitForPhases(page, js, ["booting", "running"], 1);
  await Promise.all([page.waitForURL(second), page.click("#cancel")]);
  assert.match(await page.locator(".flash.ok").innerText(), /Cancelled/);
  await waitForPhases(page, js, ["cancelled"], 2);
  await shot(page, `${tag}-run-cancelled`);

  // Transactions: search, and the detail page of the run.
  await page.goto(`${base}/console/transactions?kind=run`);
  assert.ok((await page.locator("#transactions tbody tr").count()) >= 2);
  await shot(page, `${tag}-transactions`);
  await page.goto(`${base}/console/transactions?hash=zz`);
  assert.match(await page.locator("#form-errors").innerText(), /hash/i);
  await page.goto(`${base}/console/files`);
  assert.ok(await page.locator("#files a").count());
  await shot(page, `${tag}-downloads`);

  // GPUs: assign one of the fixture host to the pool, then release it.
  const id = `#gpu-${gpu.replace(/[:.]/g, "-")}`;
  await page.goto(`${base}/console/gpus`);
  await page.selectOption(`${id} select[name=action]`, "assign");
  await Promise.all([page.waitForURL(/\/console\/gpus$/), page.click(`${id} button[type=submit]`)]);
  assert.equal(await page.locator(`${id} h2 [data-phase]`).getAttribute("data-phase"), "free");
  await shot(page, `${tag}-gpu-assigned`);
  await page.selectOption(`${id} select[name=action]`, "release");
  await Promise.all([page.waitForURL(/\/console\/gpus$/), page.click(`${id} button[type=submit]`)]);
  assert.equal(await page.locator(`${id} h2 [data-phase]`).getAttribute("data-phase"), "not_in_pool");

  await page.goto(`${base}/console/account`);
  await shot(page, `${tag}-account`);

  // Settings: the configuration and the data directory's use.
  await page.click("nav a[href='/console/settings']");
  await page.waitForURL(/\/console\/settings$/);
  assert.ok(await page.locator("#settings tr[data-setting='GEVULOT_PSK_PASSPHRASE']").count());
  assert.ok(await page.locator("#areas tr[data-area='database']").count());
  await shot(page, `${tag}-settings`);

  // The network: this node's own announcement is listed.
  await page.click("nav a[href='/console/network']");
  await page.waitForURL(/\/console\/network$/);
  assert.match(await page.locator("#nodes").innerText(), /this node/);
  assert.match(await page.locator("#sync").innerText(), /each peer is asked/);
  await shot(page, `${tag}-network`);

  // Webhooks: an inward address is refused at its field; a public one is registered, its secret
  // shown once, and deleted again.
  await page.click("nav a[href='/console/webhooks']");
  await page.waitForURL(/\/console\/webhooks$/);
  await page.fill("#url", "http://192.168.1.1/hook");
  await page.click("form[action='/console/webhooks'] button[type=submit]");
  assert.match(await page.locator("#url-error").innerText(), /GEVULOT_WEBHOOK_ALLOW_NETS/);
  assert.equal(await page.inputValue("#url"), "http://192.168.1.1/hook", "the input is kept");
  await page.fill("#url", `http://93.184.216.34/${tag}`);
  await page.click("form[action='/console/webhooks'] button[type=submit]");
  assert.match(await page.locator("#new-secret").innerText(), /^whsec_/);
  const hook = page.locator("#webhooks tr", { hasText: `/${tag}` });
  assert.equal(await hook.count(), 1);
  await shot(page, `${tag}-webhooks`);
  await page.click(`#webhooks tr:has-text("/${tag}") a`);
  await page.waitForURL(/\/console\/webhooks\/\d+$/);
  assert.match(await page.locator("main").innerText(), /Deliveries/);
  await page.goto(`${base}/console/webhooks`);
  await Promise.all([
    page.waitForURL(/\/console\/webhooks$/),
    page.click(`#webhooks tr:has-text("/${tag}") button[type=submit]`),
  ]);
  assert.equal(await page.locator("#webhooks tr", { hasText: `/${tag}` }).count(), 0);

  // Drain from the dashboard, then resume.
  await page.goto(`${base}/console`);
  await Promise.all([page.waitForURL(/\/console$/), page.click("#drain")]);
  assert.match(await page.locator("#drain-state").innerText(), /Draining since/);
  await shot(page, `${tag}-draining`);
  await Promise.all([page.waitForURL(/\/console$/), page.click("#resume")]);
  assert.match(await page.locator("#drain-state").innerText(), /Takes work/);
  await signOut(page);

  // A viewer sees everything but cannot deploy, run or change GPUs.
  await signIn(page, viewer, "viewer-password-1");
  await page.goto(`${base}/console/programs`);
  assert.equal(await page.locator("#deploy").count(), 0);
  assert.match(await page.locator("#no-deploy").innerText(), /operator role/);
  await page.goto(`${base}/console/runs/new`);
  assert.equal(await page.locator("#run").count(), 0);
  await shot(page, `${tag}-viewer`);
  // Even a hand-made request with the viewer's own CSRF token is refused.
  const csrf = await page.inputValue("header form input[name=csrf]");
  const refused = await page.request.post(`${base}/console/programs`, {
    multipart: { csrf, name: "sneaky" },
  });
  assert.equal(refused.status(), 403);
  assert.match(await refused.text(), /needs the operator role/);
  await signOut(page);
  await context.close();
}

test("the console with JavaScript", { timeout: 900_000 }, async () => {
  await flows(true);
});

test("the console without JavaScript", { timeout: 900_000 }, async () => {
  await flows(false);
});

test.after(async () => {
  writeFileSync(join(out, "result.json"), JSON.stringify(results, null, 2));
  await browser.close();
});
