// Training view: start runs (POST /training/jobs), runs list, loss curves, samples, checkpoints, tools.

import { api, blobUrl } from "./api.js";
import { loadDatasets } from "./catalog.js";
import { lineChart } from "./charts.js";
import { $, busy, bytes, formValues, h, onSubmit, poller, setAudio, showError, showOk, table, when } from "./dom.js";

const ACTIVE = new Set(["queued", "running"]);
const POLL_MS = 2000;
const FIELDS = [
  "dataset", "base_model", "method", "run_name", "epochs", "batch_size", "lr", "lora_rank", "lora_alpha",
  "grad_accum_steps", "warmup_steps", "checkpoint_every_steps", "keep_checkpoints", "lora_dropout", "min_audio_s",
  "num_workers", "cpus_per_worker", "max_failures", "seed", "use_gpu",
];
const LORA_ONLY = new Set(["lora_rank", "lora_alpha", "lora_dropout"]);
const HINTS = { dataset: /dataset|metadata|audio/i, base_model: /model/i, run_name: /run/i };
const samplePlayers = new Map();
const polling = poller(POLL_MS);
let selected = null;

const loss = (value) => (value === null || value === undefined ? "–" : Number(value).toFixed(4));

function exportCommand(run) {
  return `python -m train_jobs export --run ${run}`;
}

function samplesBlock(view) {
  if (!view.samples.length) return h("p", { class: "hint" }, "No samples yet (one per finished epoch).");
  const items = view.samples.map((sample) => {
    const key = `${sample.url}:${sample.bytes}`;
    let item = samplePlayers.get(key);
    if (!item) {
      const audio = h("audio", { controls: true, preload: "metadata", "aria-label": `Sample after epoch ${sample.epoch}` });
      const error = h("p", { class: "field-error", "aria-live": "polite" });
      blobUrl(sample.url).then((url) => setAudio(audio, url), (exc) => showError(error, exc));
      item = h("li", { class: "sample" }, h("span", {}, `Epoch ${sample.epoch}`), audio, error);
      samplePlayers.set(key, item);
    }
    return item;
  });
  return h("ul", { class: "samples" }, items);
}

function lossChart(view) {
  const train = (view.losses.train || []).map(([step, value]) => [step, value]);
  const evals = (view.losses.eval || []).map(([step, , value]) => [step, value]);
  return h(
    "figure", {},
    lineChart(
      [{ name: "train", points: train, className: "train" }, { name: "eval", points: evals, className: "eval", markers: true }],
      { label: `Loss curves of ${view.id}: ${train.length} train points, ${evals.length} eval points`, xLabel: "step", yLabel: "loss" },
    ),
    h("figcaption", {}, `Train loss ${loss(view.train_loss)} · eval loss ${loss(view.eval_loss)}`),
  );
}

async function renderDetail(name) {
  const view = await api(`/training/jobs/${encodeURIComponent(name)}`);
  const actionsError = h("p", { class: "field-error", "aria-live": "polite" });
  const stop = ACTIVE.has(view.status) ? h("button", { type: "button", class: "danger" }, "Stop run") : null;
  stop?.addEventListener("click", () => busy(stop, async () => {
    try {
      await api(`/training/jobs/${encodeURIComponent(name)}`, { method: "DELETE" });
      await select(name);
    } catch (exc) {
      showError(actionsError, exc);
    }
  }));
  const checkpoints = view.checkpoints || [];
  $("run-detail").replaceChildren(h(
    "div", {},
    h("h3", {}, `Run ${view.id}`),
    h("p", {}, h("span", { class: `status ${view.status}` }, view.status),
      ` · ${view.method || "?"} on ${view.base_model || "?"} · epoch ${view.epoch}/${view.epochs ?? "?"} · step ${view.step}/${view.total_steps ?? "?"} · runner ${view.runner || "–"}`),
    h("progress", { max: view.total_steps || 1, value: view.step || 0, "aria-label": `Steps done in ${view.id}` }),
    view.error ? h("p", { class: "form-error" }, typeof view.error === "string" ? view.error : view.error.message || JSON.stringify(view.error)) : null,
    h("div", { class: "row-actions" }, stop), actionsError,
    h("h4", {}, "Loss"), lossChart(view),
    h("h4", {}, "Samples per epoch"), samplesBlock(view),
    h("h4", {}, "Checkpoints of this run"),
    checkpoints.length
      ? table([
        ["Name", (c) => h("code", {}, c.name)],
        ["Step", (c) => c.step], ["Epoch", (c) => c.epoch ?? "–"],
        ["Train loss", (c) => loss(c.train_loss)], ["Eval loss", (c) => loss(c.eval_loss)],
        ["Epoch end", (c) => (c.epoch_end ? "yes" : "")],
      ], checkpoints)
      : h("p", { class: "hint" }, "No checkpoints yet."),
    h("h4", {}, "Export for serving"),
    h("p", {}, "Command line only for now; the exported id then appears in the model lists:"),
    h("pre", {}, h("code", {}, exportCommand(view.id))),
    view.logs_tail ? h("details", {}, h("summary", {}, "Log (end)"), h("pre", {}, view.logs_tail)) : null,
  ));
  $("run-detail").hidden = false;
  $("export-command").firstElementChild.textContent = exportCommand(view.id);
  return view;
}

async function select(name, wasPolled = false) {
  selected = name;
  try {
    const view = await renderDetail(name);
    if (ACTIVE.has(view.status)) {
      if (selected === name) polling.later(() => select(name, true));
    } else if (wasPolled) {
      await Promise.all([refreshRuns(), refreshCheckpoints()]);
    }
  } catch (error) {
    $("run-detail").hidden = false;
    $("run-detail").replaceChildren(h("p", { class: "form-error", "aria-live": "polite" }, error.message));
  }
}

async function refreshRuns() {
  try {
    const runs = (await api("/training/jobs")).data;
    showError($("train-list-error"), null);
    $("run-list").replaceChildren(runs.length
      ? table([
        ["Run", (r) => h("button", { type: "button", class: "link", onclick: () => select(r.id) }, r.id)],
        ["Status", (r) => h("span", { class: `status ${r.status}` }, r.status)],
        ["Method", (r) => r.method || "–"],
        ["Epoch", (r) => `${r.epoch}/${r.epochs ?? "?"}`],
        ["Step", (r) => `${r.step}/${r.total_steps ?? "?"}`],
        ["Train loss", (r) => loss(r.train_loss)],
        ["Eval loss", (r) => loss(r.eval_loss)],
      ], runs)
      : h("p", { class: "hint" }, "No runs yet."));
  } catch (error) {
    showError($("train-list-error"), error);
  }
}

async function refreshCheckpoints() {
  try {
    const found = (await api("/training/checkpoints")).data;
    showError($("ckpt-error"), null);
    $("ckpt-list").replaceChildren(found.length
      ? table([
        ["Path", (c) => h("code", {}, c.path)],
        ["Kind", (c) => c.kind.replace("_", " ")],
        ["Owner", (c) => c.owner],
        ["Size", (c) => (c.broken ? "–" : bytes(c.bytes))],
        ["Modified", (c) => when(c.mtime)],
        ["State", (c) => (c.broken ? h("span", { class: "status failed" }, `broken: ${c.reason}`) : "ok")],
      ], found)
      : h("p", { class: "hint" }, "No checkpoints under the storage root."));
  } catch (error) {
    showError($("ckpt-error"), error);
  }
}

async function refreshTensorboard() {
  try {
    const info = await api("/training/tensorboard");
    $("tensorboard-info").replaceChildren(info.url
      ? h("span", {}, "TensorBoard: ", h("a", { href: info.url, target: "_blank", rel: "noopener" }, info.url), ` (logs in ${info.logdir})`)
      : h("span", {}, "TensorBoard: not configured. ", info.hint || ""),
      h("br"),
      info.ray_dashboard_url
        ? h("span", {}, "Ray dashboard: ", h("a", { href: info.ray_dashboard_url, target: "_blank", rel: "noopener" }, info.ray_dashboard_url))
        : h("span", {}, "Ray dashboard: this cluster runs without one (set AVS_DASHBOARD_ADDRESS or start Ray with the dashboard)."));
  } catch (error) {
    showError($("tensorboard-info"), error);
  }
}

function toggleLora() {
  const lora = $("train-method").value === "lora";
  for (const name of LORA_ONLY) document.querySelector(`#train-form [name="${name}"]`).closest("div").hidden = !lora;
}

export function initTraining() {
  const form = $("train-form");
  $("train-method").addEventListener("change", toggleLora);
  $("ckpt-refresh").addEventListener("click", refreshCheckpoints);
  onSubmit({ form, button: $("train-submit"), error: $("train-error"), hints: HINTS }, async () => {
    const values = formValues(form, FIELDS);
    if (values.method !== "lora") LORA_ONLY.forEach((name) => delete values[name]);
    const view = await api("/training/jobs", { method: "POST", json: values });
    showOk($("train-error"), `Run ${view.id} ${view.status} (${view.total_steps ?? "?"} steps).`);
    await refreshRuns();
    await select(view.id);
  });
}

export function show() {
  polling.show();
  const loads = [loadDatasets().catch(() => {}), refreshRuns(), refreshCheckpoints(), refreshTensorboard()];
  return Promise.all(loads).then(() => selected && select(selected));
}

export const hide = () => polling.hide();
