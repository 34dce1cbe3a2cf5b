// Lists several views share (languages, voices, models, profiles, datasets), filled into <select data-fill>.

import { api } from "./api.js";
import { h } from "./dom.js";

export const UPLOAD_VOICE = "__upload__";
export const catalog = { languages: [], defaultLanguage: "en", voices: [], models: [], profiles: [], datasets: [] };

function keepValue(select, fill) {
  const previous = select.value;
  select.replaceChildren(...fill());
  if ([...select.options].some((o) => o.value === previous && !o.disabled)) select.value = previous;
}

function languageOptions() {
  return catalog.languages.map((code) => h("option", { value: code, selected: code === catalog.defaultLanguage }, code));
}

function voiceOptions(select) {
  const stored = catalog.voices.filter((v) => v.kind === "stored");
  const builtin = catalog.voices.filter((v) => v.kind === "builtin");
  const options = [h("option", { value: "" }, "Default voice")];
  if (stored.length) {
    options.push(h("optgroup", { label: "Stored voices" }, stored.map((v) => h("option", { value: v.id }, `${v.name} (${v.id})`))));
  }
  if (builtin.length) {
    options.push(h("optgroup", { label: "Built-in speakers" }, builtin.map((v) => h("option", { value: v.id }, v.name))));
  }
  if (select.dataset.uploadOption) options.push(h("option", { value: UPLOAD_VOICE }, "Upload a reference recording…"));
  return options;
}

export function modelLabel(model) {
  const kind = model.kind === "lora_adapter" ? "LoRA adapter" : model.default ? "base, default" : "fine-tuned";
  const state = model.status === "ok" ? "" : ` — ${model.status}: ${model.reason}`;
  return `${model.id} (${kind}${model.loaded ? ", loaded" : ""})${state}`;
}

function modelOptions() {
  return [
    h("option", { value: "" }, "Default model"),
    ...catalog.models.map((m) => h("option", { value: m.id, disabled: m.status !== "ok" }, modelLabel(m))),
  ];
}

function baseModelOptions() {
  return catalog.models
    .filter((m) => m.kind === "model" && m.status === "ok")
    .map((m) => h("option", { value: m.id, selected: m.default }, modelLabel(m)));
}

function profileOptions() {
  return catalog.profiles.map((p) => h("option", { value: p.name, selected: p.name === "balanced" }, p.name));
}

function datasetOptions() {
  const ready = catalog.datasets.filter((d) => d.status === "ready");
  if (!ready.length) return [h("option", { value: "" }, "no ready dataset yet")];
  return ready.map((d) => h("option", { value: d.name }, `${d.name} (${d.clips} clips, ${Math.round(d.kept_duration_s)} s)`));
}

const FILLERS = {
  languages: languageOptions,
  voices: voiceOptions,
  models: modelOptions,
  "base-models": baseModelOptions,
  profiles: profileOptions,
  datasets: datasetOptions,
};

function fill(kind) {
  for (const select of document.querySelectorAll(`select[data-fill="${kind}"]`)) {
    keepValue(select, () => FILLERS[kind](select));
    select.dispatchEvent(new Event("change", { bubbles: true }));
  }
}

export async function loadLanguages() {
  const answer = await api("/languages");
  catalog.languages = answer.languages;
  catalog.defaultLanguage = answer.default;
  fill("languages");
}

export async function loadVoices() {
  catalog.voices = (await api("/voices")).voices;
  fill("voices");
  return catalog.voices;
}

export async function loadModels() {
  catalog.models = (await api("/models")).models;
  fill("models");
  fill("base-models");
  return catalog.models;
}

export async function loadProfiles() {
  catalog.profiles = (await api("/profiles")).profiles;
  fill("profiles");
}

export async function loadDatasets() {
  catalog.datasets = (await api("/datasets")).data;
  fill("datasets");
  return catalog.datasets;
}
