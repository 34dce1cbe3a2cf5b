// Speak view: POST /tts or /tts/stream, play and download the audio, show model, fallback and timings.

import { api } from "./api.js";
import { UPLOAD_VOICE, catalog } from "./catalog.js";
import { $, audioDuration, formValues, h, onSubmit, seconds, setAudio } from "./dom.js";

const OVERRIDES = ["temperature", "top_k", "top_p", "repetition_penalty", "speed"];
const HINTS = { reference: /reference/i, voice: /voice|speaker/i, model: /model/i, language: /language/i, text: /text/i };
const MIN_REFERENCE_S = 1;
const MAX_REFERENCE_S = 30;

/** A WAV header for 16-bit mono PCM of ``length`` bytes. */
function wavHeader(sampleRate, length) {
  const view = new DataView(new ArrayBuffer(44));
  const ascii = (offset, text) => [...text].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  ascii(0, "RIFF");
  view.setUint32(4, 36 + length, true);
  ascii(8, "WAVEfmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true);
  view.setUint16(22, 1, true);
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  ascii(36, "data");
  view.setUint32(40, length, true);
  return view.buffer;
}

/** Bytes the page can play: streamed WAV gets its real sizes, raw PCM a WAV header. */
async function playable(blob, format, sampleRate) {
  if (format === "pcm") return new Blob([wavHeader(sampleRate, blob.size), blob], { type: "audio/wav" });
  if (format !== "wav" || blob.size < 44) return blob;
  const head = new DataView(await blob.slice(0, 44).arrayBuffer());
  if (head.getUint32(40, true) !== 0xffffffff) return blob;
  return new Blob([wavHeader(head.getUint32(24, true), blob.size - 44), blob.slice(44)], { type: "audio/wav" });
}

function applyProfile() {
  const profile = catalog.profiles.find((p) => p.name === $("speak-profile").value);
  if (!profile) return;
  $("speak-profile-info").textContent = `${profile.name}: ${profile.description}`;
  for (const name of OVERRIDES) $(`speak-${name}`).placeholder = String(profile.params[name]);
}

async function checkReferences(files, info) {
  info.textContent = files.length ? "checking durations…" : "";
  const notes = [];
  for (const file of files) {
    const duration = await audioDuration(file);
    if (duration === null) notes.push(`${file.name}: the browser cannot decode it (the server may still accept it)`);
    else if (duration < MIN_REFERENCE_S || duration > MAX_REFERENCE_S) {
      notes.push(`${file.name}: ${duration.toFixed(1)} s — outside the default ${MIN_REFERENCE_S}-${MAX_REFERENCE_S} s limits`);
    } else notes.push(`${file.name}: ${duration.toFixed(1)} s`);
  }
  info.textContent = notes.join("; ");
}

function request(form) {
  const values = formValues(form, ["text", "language", "voice", "model", "quality_profile", "format", "seed", "allow_fallback", ...OVERRIDES]);
  if (values.voice === UPLOAD_VOICE) {
    delete values.voice;
    const files = [...$("speak-reference").files];
    if (!files.length) return { error: "choose one or more reference recordings, or pick a voice" };
    const data = new FormData();
    for (const [name, value] of Object.entries(values)) data.append(name, String(value));
    files.forEach((file) => data.append("reference", file, file.name));
    return { form: data, format: values.format };
  }
  return { json: values, format: values.format };
}

function stat(list, term, value) {
  list.append(h("dt", {}, term), h("dd", {}, value));
}

async function speak(form) {
  const built = request(form);
  if (built.error) throw new Error(`field 'reference': ${built.error}`);
  const stream = $("speak-stream").checked;
  const started = performance.now();
  const response = await api(stream ? "/tts/stream" : "/tts", { method: "POST", json: built.json, form: built.form, raw: true });
  const reader = response.body.getReader();
  const chunks = [];
  let firstChunk = null;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (firstChunk === null) firstChunk = performance.now() - started;
    chunks.push(value);
  }
  const total = performance.now() - started;
  const headers = response.headers;
  const raw = new Blob(chunks, { type: headers.get("content-type") || "application/octet-stream" });
  const sampleRate = Number(headers.get("x-sample-rate")) || 24000;
  const audio = $("speak-audio");
  const downloadUrl = URL.createObjectURL(raw);
  const download = $("speak-download");
  if (download.href.startsWith("blob:")) URL.revokeObjectURL(download.href);
  download.href = downloadUrl;
  download.download = `speech.${built.format || "wav"}`;
  const playUrl = URL.createObjectURL(await playable(raw, built.format || "wav", sampleRate));
  setAudio(audio, playUrl);

  const notices = $("speak-notices");
  notices.replaceChildren();
  const fallback = headers.get("x-fallback-reason");
  if (fallback) notices.append(h("p", { class: "banner warn" }, `Fallback: ${headers.get("x-model-requested")} could not be used (${fallback}); ${headers.get("x-model-used")} answered.`));
  const untrained = headers.get("x-untrained-model");
  if (untrained) notices.append(h("p", { class: "banner warn" }, `Untrained model (${untrained}).`));

  const list = $("speak-stats");
  list.replaceChildren();
  stat(list, "Model requested", headers.get("x-model-requested") || "–");
  stat(list, "Model used", headers.get("x-model-used") || "–");
  stat(list, "Seed", headers.get("x-seed") || "–");
  stat(list, "Language", headers.get("x-language") || "–");
  stat(list, stream ? "Time to first audio chunk" : "Time to audio (whole file)", seconds(firstChunk / 1000));
  stat(list, "Total time", seconds(total / 1000));
  const durationTerm = h("dd", {}, "…");
  const rtfTerm = h("dd", {}, "…");
  list.append(h("dt", {}, "Audio duration"), durationTerm, h("dt", {}, "Real-time factor (total time / audio)"), rtfTerm);
  if (headers.get("x-real-time-factor")) stat(list, "Server real-time factor", headers.get("x-real-time-factor"));
  $("speak-result").hidden = false;

  const duration = await new Promise((resolve) => {
    const done = () => resolve(Number.isFinite(audio.duration) ? audio.duration : Number(headers.get("x-audio-seconds")) || null);
    if (audio.readyState >= 1) done();
    else {
      audio.addEventListener("loadedmetadata", done, { once: true });
      audio.addEventListener("error", () => resolve(Number(headers.get("x-audio-seconds")) || null), { once: true });
    }
  });
  durationTerm.textContent = seconds(duration);
  rtfTerm.textContent = duration ? (total / 1000 / duration).toFixed(2) : "–";
}

export function initSpeak() {
  const form = $("speak-form");
  $("speak-profile").addEventListener("change", applyProfile);
  $("speak-voice").addEventListener("change", () => {
    $("speak-reference-box").hidden = $("speak-voice").value !== UPLOAD_VOICE;
  });
  $("speak-reference").addEventListener("change", () => checkReferences([...$("speak-reference").files], $("speak-reference-info")));
  onSubmit({ form, button: $("speak-submit"), error: $("speak-error"), hints: HINTS }, () => speak(form));
}

/** Select a voice in the Speak form (used by the Voices view). */
export function useVoice(voiceId) {
  $("speak-voice").value = voiceId;
  $("speak-voice").dispatchEvent(new Event("change"));
}
