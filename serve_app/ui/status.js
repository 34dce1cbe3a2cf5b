// Status view: GET /health/engines per deployment, and the errors this page has seen.

import { api, onError, recentErrors } from "./api.js";
import { $, h, poller, showError } from "./dom.js";

const POLL_MS = 5000;
const polling = poller(POLL_MS);

function replicaSummary(replicas) {
  if (!replicas) return "unknown (the Serve controller did not answer)";
  return Object.entries(replicas).map(([state, count]) => `${count} ${state}`).join(", ") || "none";
}

function engineCard(name, info) {
  const model = info.model || {};
  const rows = [
    ["Status", h("span", { class: `status ${info.status === "ok" ? "ready" : "failed"}` }, info.status)],
    ["Replicas", replicaSummary(info.replicas)],
    ["Answered by", `${info.replica} (pid ${info.pid}, up ${info.uptime_s} s)`],
    ["Device", info.device],
    ["Default model", `${info.default_model}${model.untrained ? " — untrained: produces noise" : ""}`],
    ["Loaded models", (info.loaded_models || []).join(", ") || "none"],
    ["Sample rate", `${info.sample_rate} Hz`],
    ["Languages", (info.languages || []).join(", ")],
    ["Latents computed", info.latents_computed],
    ["Last error", info.last_error ? h("span", { class: "form-error" }, typeof info.last_error === "string" ? info.last_error : JSON.stringify(info.last_error)) : "none"],
  ];
  return h(
    "div", { class: "card" },
    h("h3", {}, name),
    h("dl", { class: "stats" }, rows.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
    h("details", {}, h("summary", {}, "Load report of the default model"), h("pre", {}, JSON.stringify(model, null, 2))),
  );
}

function renderErrors(log) {
  const list = $("status-errors");
  if (!log.length) {
    list.replaceChildren(h("li", { class: "hint" }, "none"));
    return;
  }
  list.replaceChildren(...log.map((e) => h(
    "li", {},
    h("time", { datetime: e.at.toISOString() }, e.at.toLocaleTimeString()),
    ` ${e.path || ""} ${e.status || ""} ${e.type}: ${e.message}`,
    e.requestId ? h("span", { class: "hint" }, ` (request ${e.requestId})`) : null,
  )));
}

export async function refresh() {
  try {
    const engines = await api("/health/engines");
    showError($("status-error"), null);
    $("status-engines").replaceChildren(...Object.entries(engines).map(([name, info]) => engineCard(name, info)));
  } catch (error) {
    showError($("status-error"), error);
  }
  polling.later(refresh);
}

export function initStatus() {
  $("status-refresh").addEventListener("click", refresh);
  onError(renderErrors);
  renderErrors(recentErrors());
}

export function show() {
  polling.show();
  return refresh();
}

export const hide = () => polling.hide();
