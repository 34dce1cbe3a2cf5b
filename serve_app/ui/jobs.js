// Jobs view: submit long text or SRT (POST /jobs), list with live progress, play/download, cancel.

import { api, blobUrl } from "./api.js";
import { $, busy, formValues, h, onSubmit, poller, seconds, setAudio, showError, showOk, when } from "./dom.js";

const ACTIVE = new Set(["queued", "running"]);
const POLL_MS = 1500;
const HINTS = { voice: /voice|speaker/i, language: /language/i, srt: /srt|subtitle|cue/i, text: /text/i };
const polling = poller(POLL_MS);
const players = new Map();

function kind() {
  return document.querySelector('input[name="job-kind"]:checked').value;
}

async function loadAudio(job, holder) {
  const error = holder.querySelector(".field-error");
  try {
    const url = await blobUrl(`/jobs/${encodeURIComponent(job.id)}/audio`);
    const audio = h("audio", { controls: true, "aria-label": `Audio of job ${job.id}` });
    setAudio(audio, url);
    const link = h("a", { href: url, download: `${job.id}.${job.format}` }, "Download");
    holder.replaceChildren(audio, " ", link, error);
    players.set(job.id, holder);
  } catch (exc) {
    showError(error, exc);
  }
}

function jobCard(job) {
  const actions = h("div", { class: "row-actions" });
  const error = h("p", { class: "field-error", "aria-live": "polite" });
  if (ACTIVE.has(job.status)) {
    const cancel = h("button", { type: "button", class: "danger" }, "Cancel");
    cancel.addEventListener("click", () => busy(cancel, async () => {
      try {
        await api(`/jobs/${encodeURIComponent(job.id)}`, { method: "DELETE" });
        await refresh();
      } catch (exc) {
        showError(error, exc);
      }
    }));
    actions.append(cancel);
  }
  let media = null;
  if (job.status === "succeeded") {
    media = players.get(job.id);
    if (!media) {
      media = h("div", { class: "job-media" }, h("p", { class: "field-error", "aria-live": "polite" }));
      loadAudio(job, media);
    }
  }
  const timings = job.timings || {};
  const details = [
    `${job.kind === "srt" ? "subtitles" : "text"}, ${job.chars} characters, ${job.done}/${job.total} units`,
    `model ${job.model_used || job.model_requested}`,
    `created ${when(timings.created_at)}`,
    timings.audio_seconds ? `audio ${seconds(timings.audio_seconds)}` : null,
  ].filter(Boolean).join(" · ");
  return h(
    "li", { class: `job ${job.status}`, "data-job": job.id },
    h("div", { class: "job-head" }, h("code", {}, job.id), h("span", { class: `status ${job.status}` }, job.status)),
    h("progress", { max: 1, value: job.progress || 0, "aria-label": `Progress of job ${job.id}` }),
    h("p", { class: "hint" }, details),
    job.fallback ? h("p", { class: "banner warn" }, `Fallback: ${job.fallback_reason}`) : null,
    job.untrained ? h("p", { class: "banner warn" }, "Untrained model: the audio is noise.") : null,
    (job.warnings || []).length ? h("ul", { class: "warnings" }, job.warnings.map((w) => h("li", {}, typeof w === "string" ? w : w.message || JSON.stringify(w)))) : null,
    job.error ? h("p", { class: "form-error" }, job.error.message || String(job.error)) : null,
    media,
    actions,
    error,
  );
}

export async function refresh() {
  let jobs = [];
  try {
    jobs = (await api("/jobs?limit=50")).data;
    showError($("job-list-error"), null);
    $("job-list").replaceChildren(jobs.length ? h("ul", { class: "jobs" }, jobs.map(jobCard)) : h("p", { class: "hint" }, "No jobs yet."));
  } catch (error) {
    showError($("job-list-error"), error);
  }
  if (jobs.some((j) => ACTIVE.has(j.status))) polling.later(refresh);
}

async function submit(form) {
  const values = formValues(form, ["language", "voice", "model", "quality_profile", "format", "seed"]);
  if (kind() === "srt") {
    const file = $("job-srt").files[0];
    if (!file) throw new Error("field 'srt': choose an SRT subtitle file");
    const data = new FormData();
    for (const [name, value] of Object.entries(values)) data.append(name, String(value));
    data.append("srt", file, file.name);
    return api("/jobs", { method: "POST", form: data });
  }
  return api("/jobs", { method: "POST", json: { ...values, text: $("job-text").value } });
}

export function initJobs() {
  const form = $("job-form");
  for (const radio of form.querySelectorAll('input[name="job-kind"]')) {
    radio.addEventListener("change", () => {
      $("job-text-box").hidden = kind() !== "text";
      $("job-srt-box").hidden = kind() !== "srt";
    });
  }
  onSubmit({ form, button: $("job-submit"), error: $("job-error"), hints: HINTS }, async () => {
    const job = await submit(form);
    showOk($("job-error"), `Job ${job.id} accepted (${job.total} units).`);
    await refresh();
  });
}

export function show() {
  polling.show();
  return refresh();
}

export const hide = () => polling.hide();
