// Browser test of the Compose and HPC Jobs pages against a real Airflow (started by
// tests/integration/test_composer_browser.py, which passes BASE, PASSWORD, TOKEN, SHOTS, CHROMIUM).
// Drags three stages onto the canvas, connects them (mouse and keyboard), sets parameters, provokes
// and fixes a validation error, saves, creates the DAG, triggers it and watches it succeed in the
// monitor. Then: a built-in case study saved unchanged gives its manifest back; keyboard-only use.
// Prints one JSON line with what it saw for the Python test to check.
import { chromium } from "playwright-core";
import { mkdirSync, readFileSync } from "node:fs";

const { BASE, PASSWORD, TOKEN, SHOTS, CHROMIUM, CASE_STUDY_FILE } = process.env;
mkdirSync(SHOTS, { recursive: true });
const seen = {};
const step = (text) => console.error(`[compose e2e ${new Date().toISOString().slice(11, 19)}] ${text}`);
const headers = { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" };

async function waitFor(what, predicate, timeoutMs = 60000, intervalMs = 500) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await predicate();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"] });
const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
page.setDefaultTimeout(30000);
const shot = (name) => page.screenshot({ path: `${SHOTS}/${name}.png` });
try {
  step("log in through Airflow's login page");
  await page.goto(`${BASE}/`);
  await page.locator("input[name=username]").fill("admin");
  await page.locator("input[type=password]").fill(PASSWORD);
  await page.keyboard.press("Enter");
  await page.waitForURL((url) => !url.pathname.includes("/auth/login"));

  step("open Compose Workflow from Airflow's navigation");
  await page.getByRole("link", { name: "Compose Workflow" }).or(page.getByRole("button", { name: "Compose Workflow" })).first().click();
  const frameEl = page.locator('iframe[src*="/hpcai/compose"]');
  await frameEl.waitFor();
  const f = page.frameLocator('iframe[src*="/hpcai/compose"]');
  await f.locator('button[data-entry="simulation:seismic"]').waitFor();
  const pane = f.locator(".react-flow__pane");

  step("drag three stages onto the canvas");
  await f.locator('button[data-entry="simulation:assembly_line"]').dragTo(pane, { targetPosition: { x: 120, y: 80 } });
  await f.locator('button[data-entry="simulation:seismic"]').dragTo(pane, { targetPosition: { x: 120, y: 300 } });
  await f.locator('button[data-entry="dask_analysis"]').dragTo(pane, { targetPosition: { x: 480, y: 190 } });
  await waitFor("three nodes", async () => (await f.locator(".react-flow__node").count()) === 3);
  // The analysis has no input yet: the server says so, on that node.
  await f.locator('[data-testid="node-dask_analysis_1"][data-invalid="true"]').waitFor();
  seen.unconnected = await f.locator('[data-testid="node-dask_analysis_1"] .stage-problems').innerText();
  await shot("composer-01-three-stages");

  step("connect: drag from an output handle to an input handle, and by keyboard from the inspector");
  await f.locator('.react-flow__node[data-id="assembly_line_1"] .react-flow__handle.source')
    .dragTo(f.locator('.react-flow__node[data-id="dask_analysis_1"] .react-flow__handle.target'));
  await waitFor("the first edge", async () => (await f.locator(".react-flow__edge").count()) === 1);
  await f.locator('button[data-stage="dask_analysis_1"]').click();
  await f.locator("#connect-from").selectOption("seismic_1");
  await f.locator("#connect").click();
  await waitFor("two edges", async () => (await f.locator(".react-flow__edge").count()) === 2);
  await f.locator('[data-testid="node-dask_analysis_1"][data-invalid="false"]').waitFor();

  step("set parameters; a grid too small for the absorbing border is refused on the seismic node");
  await f.locator('button[data-stage="assembly_line_1"]').click();
  await f.locator("#arg-assembly_line_1-kernel_params_horizon").fill("200");
  await f.locator("#arg-assembly_line_1-kernel_params_warmup").fill("10");
  await f.locator('button[data-stage="seismic_1"]').click();
  await f.locator("#arg-seismic_1-kernel_params_nx").fill("48");
  await f.locator("#arg-seismic_1-kernel_params_nz").fill("48");
  await f.locator("#arg-seismic_1-kernel_params_steps").fill("20");
  await f.locator("#arg-seismic_1-kernel_params_device").selectOption("cpu");
  await f.locator('[data-testid="node-seismic_1"][data-invalid="true"]').waitFor();
  seen.provoked = await f.locator('[data-testid="node-seismic_1"] .stage-problems').innerText();
  seen.save_disabled_while_invalid = await f.locator("#save").isDisabled();
  await shot("composer-02-validation-error");
  await f.locator("#arg-seismic_1-kernel_params_sponge_cells").fill("8");
  await f.locator('[data-testid="node-seismic_1"][data-invalid="false"]').waitFor();

  step("name the workflow and save it as a template version");
  await f.locator("#workflow-settings").click();
  await f.locator("#tpl-name").fill("composed-e2e");
  await f.locator("#tpl-title").fill("Composed in the browser test");
  await waitFor("a valid workflow", async () => (await f.locator("#check-status").innerText()) === "valid");
  await shot("composer-03-valid");
  const saved = page.waitForResponse((r) => r.url().endsWith("/api/compose/save"));
  await f.locator("#save").click();
  seen.save = await (await saved).json();
  await f.locator("#create-dag").click();
  const link = f.locator("#dag-link");
  await link.waitFor();
  seen.dag_id = (await link.innerText()).replace(/^Open /, "").replace(/ in Airflow$/, "");
  await shot("composer-04-saved-and-created");

  step(`wait for ${seen.dag_id} in Airflow, trigger it on the local backend`);
  await waitFor("the DAG in Airflow", async () => (await fetch(`${BASE}/api/v2/dags/${seen.dag_id}`, { headers })).ok, 120000, 1000);
  await fetch(`${BASE}/api/v2/dags/${seen.dag_id}`, { method: "PATCH", headers, body: JSON.stringify({ is_paused: false }) });
  const trigger = await fetch(`${BASE}/api/v2/dags/${seen.dag_id}/dagRuns`, { method: "POST", headers, body: JSON.stringify({ logical_date: null }) });
  if (!trigger.ok) throw new Error(`trigger failed: ${trigger.status} ${await trigger.text()}`);
  seen.run_id = (await trigger.json()).dag_run_id;

  step("watch it in the run's HPC Jobs tab");
  await page.goto(`${BASE}/dags/${encodeURIComponent(seen.dag_id)}/runs/${encodeURIComponent(seen.run_id)}/plugin/hpcai-jobs`);
  const m = page.frameLocator('iframe[src*="/hpcai/monitor"]');
  await m.locator("#run-state").waitFor();
  await waitFor("a live monitor with a running job", async () => (await m.locator("#jobs tbody tr").count()) >= 1, 60000);
  await shot("composer-05-monitor-live");
  await waitFor("the run to succeed", async () => {
    const state = await m.locator("#run-state").innerText();
    if (state === "failed") throw new Error("the run failed");
    return state === "success";
  }, 240000, 1000);
  await m.locator('section[data-outputs="dask_analysis_1"] table').waitFor();
  seen.monitor_rows = await m.locator("#jobs tbody tr").evaluateAll((rows) => rows.map((r) => [...r.cells].map((c) => c.innerText)));
  seen.csv_header = await m.locator('section[data-outputs="dask_analysis_1"] thead').innerText();
  const chart = m.locator('section[data-outputs="dask_analysis_1"] img');
  await chart.waitFor();
  seen.chart_width = await waitFor("the chart image to load", () => chart.evaluate((img) => img.complete && img.naturalWidth));
  await shot("composer-06-monitor-success");

  step("a case study opens in the editor and saves back byte for byte");
  await page.goto(`${BASE}/hpcai/templates#/t/climate-adaptive`);
  await page.locator("#open-in-composer").click(); // the gallery's "Open in Compose"
  await page.locator('[data-testid="node-factory"]').waitFor();
  await waitFor("a valid workflow", async () => (await page.locator("#check-status").innerText()) === "valid");
  const same = page.waitForResponse((r) => r.url().endsWith("/api/compose/save"));
  await page.locator("#save").click();
  const sameBody = await (await same).json();
  seen.case_study_unchanged = sameBody.unchanged === true && sameBody.manifest === readFileSync(CASE_STUDY_FILE, "utf8");
  await shot("composer-07-case-study-round-trip");

  step("keyboard only: add, connect, configure, save");
  await page.goto(`${BASE}/hpcai/compose`);
  await page.locator('button[data-entry="simulation:assembly_line"]').waitFor();
  await page.locator('button[data-entry="simulation:assembly_line"]').focus();
  await page.keyboard.press("Enter"); // add
  await page.locator('button[data-entry="dask_analysis"]').focus();
  await page.keyboard.press("Enter"); // add; the new stage is selected
  await page.locator("#connect-from").focus();
  await page.keyboard.press("ArrowDown"); // the only other stage
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter"); // Connect
  await waitFor("a keyboard edge", async () => (await page.locator(".react-flow__edge").count()) === 1);
  await page.locator('button[data-stage="assembly_line_1"]').focus();
  await page.keyboard.press("Enter");
  await page.locator("#arg-assembly_line_1-kernel_params_horizon").focus();
  await page.keyboard.type("300");
  await page.locator("#arg-assembly_line_1-kernel_params_warmup").focus();
  await page.keyboard.type("20");
  await page.locator("#workflow-settings").focus();
  await page.keyboard.press("Enter");
  await page.locator("#tpl-name").focus();
  await page.keyboard.press("Control+A");
  await page.keyboard.type("keyboard-e2e");
  await waitFor("a valid workflow", async () => (await page.locator("#check-status").innerText()) === "valid");
  const kb = page.waitForResponse((r) => r.url().endsWith("/api/compose/save"));
  await page.locator("#save").focus();
  await page.keyboard.press("Enter");
  seen.keyboard_save = await (await kb).json();
  await shot("composer-08-keyboard");
  console.log(JSON.stringify(seen));
} catch (err) {
  await shot("composer-failure").catch(() => {});
  console.log(JSON.stringify(seen));
  console.error(err.stack || String(err));
  process.exitCode = 1;
} finally {
  await browser.close();
}
