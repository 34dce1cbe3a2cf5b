// Entry point: tabs (keyboard: arrows, Home, End), the API-key button, the untrained-model banner, shared lists.

import { api, askForKey, forgetKey } from "./api.js";
import { loadLanguages, loadModels, loadProfiles, loadVoices } from "./catalog.js";
import * as datasets from "./datasets.js";
import { $ } from "./dom.js";
import * as jobs from "./jobs.js";
import { initSpeak } from "./speak.js";
import * as status from "./status.js";
import * as training from "./training.js";
import * as voices from "./voices.js";

const VIEWS = {
  speak: { show: () => Promise.all([loadVoices(), loadModels()]) }, // also refreshes the other views' selects
  voices: { show: voices.show },
  jobs,
  datasets,
  training: { show: () => Promise.all([loadModels(), training.show()]), hide: training.hide },
  status,
};
const tabs = [...document.querySelectorAll('[role="tab"]')];
let current = null;

function activate(name, focus = false) {
  if (!VIEWS[name]) name = "speak";
  if (current && current !== name) VIEWS[current].hide?.();
  current = name;
  for (const tab of tabs) {
    const selected = tab.dataset.view === name;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    $(tab.getAttribute("aria-controls")).hidden = !selected;
    if (selected && focus) tab.focus();
  }
  Promise.resolve(VIEWS[name].show?.()).catch(() => {});
}

function onTabKey(event) {
  const index = tabs.indexOf(event.target);
  const moves = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: tabs.length - 1 };
  if (!(event.key in moves)) return;
  event.preventDefault();
  const next = tabs[(moves[event.key] + tabs.length) % tabs.length];
  location.hash = `#${next.dataset.view}`;
  activate(next.dataset.view, true);
}

async function untrainedBanner() {
  try {
    const engines = await api("/health/engines");
    const untrained = Object.values(engines).filter((e) => e.model && e.model.untrained);
    const banner = $("untrained-banner");
    if (untrained.length) {
      banner.textContent = `The default model (${untrained[0].default_model}) is the untrained tiny test model: `
        + "its random weights produce noise, not speech. Install the XTTS-v2 weights for real voices.";
      banner.hidden = false;
    }
  } catch {
    // Optional here; the Status view reports failures.
  }
}

async function loadShared() {
  await loadLanguages().catch(() => {});
  await Promise.all([loadVoices(), loadModels(), loadProfiles()].map((p) => p.catch(() => {})));
}

function init() {
  initSpeak();
  voices.initVoices();
  jobs.initJobs();
  datasets.initDatasets();
  training.initTraining();
  status.initStatus();
  for (const tab of tabs) {
    tab.addEventListener("click", () => {
      location.hash = `#${tab.dataset.view}`;
    });
    tab.addEventListener("keydown", onTabKey);
  }
  window.addEventListener("hashchange", () => activate(location.hash.slice(1)));
  $("key-button").addEventListener("click", () => askForKey("Enter the API key for this service.").then(loadShared, () => {}));
  $("key-forget").addEventListener("click", () => {
    forgetKey();
    $("key-dialog").close("cancel");
  });
  activate(location.hash.slice(1));
  // One call at a time until the key question is settled: /health/engines needs the key too, and two
  // requests meeting the key dialog at once left the second without languages.
  loadShared().then(untrainedBanner);
}

init();
