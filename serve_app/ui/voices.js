// Voices view: stored voices (create from uploads, preview, use, delete) and built-in speakers.

import { api } from "./api.js";
import { catalog, loadVoices } from "./catalog.js";
import { $, audioDuration, busy, dropZone, h, onSubmit, setAudio, showError, showOk, table, when } from "./dom.js";
import { useVoice } from "./speak.js";

const MIN_S = 1;
const MAX_S = 30;
const MAX_FILES = 5;
const HINTS = { files: /reference|audio|file/i, language: /language/i };

async function listFiles(files) {
  const list = $("voice-file-list");
  list.replaceChildren(...files.map((file) => h("li", {}, `${file.name}: checking…`)));
  const problems = [];
  if (files.length > MAX_FILES) problems.push(`at most ${MAX_FILES} files`);
  await Promise.all(files.map(async (file, index) => {
    const duration = await audioDuration(file);
    let text = `${file.name}: ${duration === null ? "cannot be decoded by the browser" : `${duration.toFixed(1)} s`}`;
    if (duration !== null && (duration < MIN_S || duration > MAX_S)) {
      text += ` — outside ${MIN_S}-${MAX_S} s`;
      problems.push(`${file.name} is ${duration.toFixed(1)} s long`);
    }
    list.children[index].textContent = text;
    list.children[index].className = text.includes("—") ? "bad" : "";
  }));
  return problems;
}

async function preview(voiceId, button, player, errorSlot) {
  showError(errorSlot, null);
  await busy(button, async () => {
    try {
      const text = $("voice-preview-text").value.trim() || "This is a short preview of my voice.";
      const response = await api("/tts", { method: "POST", json: { text, voice: voiceId, format: "wav" }, raw: true });
      setAudio(player, URL.createObjectURL(await response.blob()));
      player.hidden = false;
      await player.play().catch(() => {});
    } catch (error) {
      showError(errorSlot, error);
    }
  });
}

function voiceActions(voice) {
  const player = h("audio", { controls: true, hidden: true, "aria-label": `Preview of ${voice.name}` });
  const errorSlot = h("p", { class: "field-error", "aria-live": "polite" });
  const previewButton = h("button", { type: "button", class: "secondary", onclick: () => preview(voice.id, previewButton, player, errorSlot) }, "Preview");
  const cells = [previewButton];
  if (voice.kind === "stored") {
    const useButton = h("button", {
      type: "button", class: "secondary",
      onclick: () => { useVoice(voice.id); location.hash = "#speak"; },
    }, "Use in Speak");
    const deleteButton = h("button", { type: "button", class: "danger" }, "Delete");
    deleteButton.addEventListener("click", async () => {
      if (deleteButton.dataset.confirm !== "yes") {
        deleteButton.dataset.confirm = "yes";
        deleteButton.textContent = "Confirm delete";
        setTimeout(() => { deleteButton.dataset.confirm = ""; deleteButton.textContent = "Delete"; }, 5000);
        return;
      }
      try {
        await api(`/voices/${encodeURIComponent(voice.id)}`, { method: "DELETE" });
        await refresh();
      } catch (error) {
        showError(errorSlot, error);
      }
    });
    cells.push(useButton, deleteButton);
  }
  return h("div", { class: "row-actions" }, cells, player, errorSlot);
}

function render() {
  const stored = catalog.voices.filter((v) => v.kind === "stored");
  const builtin = catalog.voices.filter((v) => v.kind === "builtin");
  $("voice-list").replaceChildren(stored.length
    ? table([
      ["Name", (v) => v.name],
      ["Id", (v) => h("code", {}, v.id)],
      ["Language", (v) => v.language],
      ["Created", (v) => when(v.created_at)],
      ["", voiceActions],
    ], stored)
    : h("p", { class: "hint" }, "No stored voices yet: create one above."));
  $("builtin-list").replaceChildren(table([["Speaker", (v) => v.name], ["", voiceActions]], builtin));
}

export async function refresh() {
  try {
    await loadVoices();
    render();
    showError($("voice-list-error"), null);
  } catch (error) {
    showError($("voice-list-error"), error);
  }
}

export function initVoices() {
  const form = $("voice-form");
  let problems = [];
  dropZone($("voice-drop"), async (files) => { problems = await listFiles(files); });
  onSubmit({ form, button: $("voice-submit"), error: $("voice-error"), hints: HINTS }, async () => {
    const files = [...$("voice-files").files];
    if (!$("voice-name").value.trim()) throw new Error("field 'name': give the voice a name");
    if (!files.length) throw new Error("field 'files': choose or drop one or more reference recordings");
    if (problems.length) throw new Error(`field 'files': ${problems.join("; ")}`);
    const data = new FormData();
    data.append("name", $("voice-name").value.trim());
    data.append("language", $("voice-language").value);
    files.forEach((file) => data.append("files", file, file.name));
    const voice = await api("/voices", { method: "POST", form: data });
    showOk($("voice-error"), `Created voice ${voice.name} (${voice.id}).`);
    form.reset();
    $("voice-file-list").replaceChildren();
    problems = [];
    await refresh();
  });
}

export const show = refresh;
