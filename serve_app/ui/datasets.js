// Datasets view: build from uploaded recordings (POST /datasets), progress, manifest chart, clips.

import { api, blobUrl } from "./api.js";
import { catalog, loadDatasets } from "./catalog.js";
import { barChart } from "./charts.js";
import {
  $, busy, bytes, dropZone, formValues, h, onSubmit, poller, seconds, setAudio, showError, showOk, table,
} from "./dom.js";

const POLL_MS = 2000;
const CLIPS_SHOWN = 8;
const HINTS = { files: /recording|upload|audio/i, name: /dataset/i };
const polling = poller(POLL_MS);
let selected = null;

function listFiles(files) {
  $("dataset-file-list").replaceChildren(...files.map((file) => h("li", {}, `${file.name} (${bytes(file.size)})`)));
}

function manifestChart(manifest) {
  const bars = [{ label: "kept", value: manifest.kept || 0, kind: "good" }];
  for (const [reason, count] of Object.entries(manifest.rejected_by_reason || {})) bars.push({ label: reason, value: count, kind: "bad" });
  const filtered = bars.slice(1).reduce((sum, b) => sum + b.value, 0);
  const label = `Clips kept: ${manifest.kept || 0}; filtered: ${filtered} (${bars.slice(1).map((b) => `${b.label} ${b.value}`).join(", ") || "none"})`;
  return h("figure", {}, barChart(bars, label), h("figcaption", {}, label));
}

function progressBlock(view) {
  const progress = view.progress || {};
  const total = progress.sources_total || 0;
  const done = progress.sources_done || 0;
  return h(
    "div", { class: "progress-block" },
    h("p", {}, `Stage: ${progress.stage || (view.status === "ready" ? "done" : "starting")} · sources ${done}/${total || "?"} · clips ${progress.clips ?? "–"} (kept ${progress.clips_kept ?? "–"})`),
    h("progress", { max: total || 1, value: view.status === "ready" ? total || 1 : done, "aria-label": `Build progress of ${view.name}` }),
  );
}

async function clipsBlock(name) {
  const answer = await api(`/datasets/${encodeURIComponent(name)}/clips?limit=${CLIPS_SHOWN}`);
  if (!answer.data.length) return h("p", { class: "hint" }, "No kept clips.");
  const rows = answer.data.map((clip) => {
    const audio = h("audio", { controls: true, hidden: true, "aria-label": `Clip ${clip.id}` });
    const error = h("p", { class: "field-error", "aria-live": "polite" });
    const play = h("button", { type: "button", class: "secondary" }, "Listen");
    play.addEventListener("click", () => busy(play, async () => {
      try {
        setAudio(audio, await blobUrl(clip.audio_url));
        audio.hidden = false;
        play.hidden = true;
        await audio.play().catch(() => {});
      } catch (exc) {
        showError(error, exc);
      }
    }));
    return h("li", { class: "clip" }, h("p", {}, h("code", {}, clip.id), ` (${seconds(clip.duration_s, 1)}) `, h("q", {}, clip.text)), play, audio, error);
  });
  return h("div", {}, h("h4", {}, `Clips (${answer.data.length} of ${answer.total})`), h("ul", { class: "clips" }, rows));
}

async function renderDetail(name) {
  const panel = $("dataset-detail");
  const view = await api(`/datasets/${encodeURIComponent(name)}`);
  const manifest = view.manifest;
  const parts = [
    h("h3", {}, `Dataset ${view.name}`),
    h("p", {}, h("span", { class: `status ${view.status}` }, view.status), ` · runner ${view.runner || "–"} · language ${view.language || "–"}`),
    progressBlock(view),
    view.error ? h("p", { class: "form-error" }, typeof view.error === "string" ? view.error : view.error.message || JSON.stringify(view.error)) : null,
  ];
  if (manifest) {
    parts.push(
      h("h4", {}, "Manifest"),
      h("p", {}, `${manifest.kept} of ${manifest.clips} clips kept · ${seconds(manifest.kept_duration_s, 1)} of ${seconds(manifest.total_duration_s, 1)} · train ${manifest.train ?? "–"} / eval ${manifest.eval ?? "–"}`),
      manifestChart(manifest),
    );
    if ((manifest.sources || []).length) {
      parts.push(table([
        ["Source", (s) => s.source_id],
        ["Status", (s) => s.status],
        ["Clips kept", (s) => `${s.kept ?? "–"} / ${s.clips ?? "–"}`],
        ["Duration", (s) => seconds(s.duration_s, 1)],
        ["Reason", (s) => s.reason || ""],
      ], manifest.sources, "Sources"));
    }
    parts.push(await clipsBlock(name));
  }
  if (view.logs_tail) parts.push(h("details", {}, h("summary", {}, "Build log (end)"), h("pre", {}, view.logs_tail)));
  panel.replaceChildren(...parts.filter(Boolean));
  panel.hidden = false;
  return view;
}

async function select(name, wasPolled = false) {
  selected = name;
  try {
    const view = await renderDetail(name);
    if (view.status === "building") {
      if (selected === name) polling.later(() => select(name, true));
    } else if (wasPolled) {
      await refresh();
    }
  } catch (error) {
    $("dataset-detail").hidden = false;
    $("dataset-detail").replaceChildren(h("p", { class: "form-error", "aria-live": "polite" }, error.message));
  }
}

export async function refresh() {
  try {
    await loadDatasets();
    showError($("dataset-list-error"), null);
    const rows = catalog.datasets;
    $("dataset-list").replaceChildren(rows.length
      ? table([
        ["Name", (d) => h("button", { type: "button", class: "link", onclick: () => select(d.name) }, d.name)],
        ["Status", (d) => h("span", { class: `status ${d.status}` }, d.status)],
        ["Clips kept", (d) => `${d.clips} / ${d.clips_total}`],
        ["Kept audio", (d) => seconds(d.kept_duration_s, 1)],
        ["Runner", (d) => d.runner || "–"],
      ], rows)
      : h("p", { class: "hint" }, "No datasets yet."));
  } catch (error) {
    showError($("dataset-list-error"), error);
  }
}

export function initDatasets() {
  const form = $("dataset-form");
  dropZone($("dataset-drop"), listFiles);
  onSubmit({ form, button: $("dataset-submit"), error: $("dataset-error"), hints: HINTS }, async () => {
    const files = [...$("dataset-files").files];
    const values = formValues(form, ["name", "language", "whisper_model", "min_clip_s", "max_clip_s"]);
    if (!values.name) throw new Error("field 'name': give the dataset a name");
    if (!files.length) throw new Error("field 'files': choose or drop one or more recordings");
    const data = new FormData();
    for (const [name, value] of Object.entries(values)) data.append(name, String(value));
    files.forEach((file) => data.append("files", file, file.name));
    const answer = await api("/datasets", { method: "POST", form: data });
    showOk($("dataset-error"), `Building ${answer.name} (${answer.runner}${answer.appended ? ", adding recordings" : ""}).`);
    await refresh();
    await select(answer.name);
  });
}

export function show() {
  polling.show();
  return refresh().then(() => selected && select(selected));
}

export const hide = () => polling.hide();
