// Speak view: POST /tts or /tts/stream (MP3 streams play as they arrive), record a reference from the
// microphone, play and download the audio, show model, fallback and timings.

import { api } from "./api.js";
import { UPLOAD_VOICE, catalog } from "./catalog.js";
import { $, audioDuration, formValues, h, onSubmit, seconds, setAudio } from "./dom.js";

const OVERRIDES = ["temperature", "top_k", "top_p", "repetition_penalty", "speed"];
const HINTS = { reference: /reference/i, voice: /voice|speaker/i, model: /model/i, language: /language/i, text: /text/i };
const MIN_REFERENCE_S = 1;
const MAX_REFERENCE_S = 30;
const RECORDING_TYPE = "audio/webm;codecs=opus";

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

/** Whether streamed ``format`` can play as it arrives (Media Source Extensions). */
function progressive(format) {
  return format === "mp3" && "MediaSource" in window && MediaSource.isTypeSupported("audio/mpeg");
}

/** Feeds fetched chunks to a SourceBuffer of ``audio`` (appends queued while it is updating). */
class StreamPlayer {
  constructor(audio) {
    this.audio = audio;
    this.source = new MediaSource();
    this.queue = [];
    this.ended = false;
    this.started = false;
    this.buffer = null;
    this.finished = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.source.addEventListener("sourceopen", () => {
      try {
        this.buffer = this.source.addSourceBuffer("audio/mpeg");
      } catch (exc) {
        this.reject(exc);
        return;
      }
      this.buffer.addEventListener("updateend", () => this.updated());
      this.buffer.addEventListener("error", () => this.reject(new Error("the browser could not append the streamed audio")));
      this.pump();
    }, { once: true });
    setAudio(audio, URL.createObjectURL(this.source));
  }

  push(chunk) {
    this.queue.push(chunk);
    this.pump();
  }

  /** No more chunks: resolves when endOfStream() was called. */
  end() {
    this.ended = true;
    this.pump();
    return this.finished;
  }

  updated() {
    if (!this.started) {
      this.started = true;
      this.audio.play().catch(() => {});
    }
    this.pump();
  }

  pump() {
    if (!this.buffer || this.buffer.updating) return;
    try {
      if (this.queue.length) {
        this.buffer.appendBuffer(this.queue.shift());
      } else if (this.ended) {
        if (this.source.readyState === "open") this.source.endOfStream();
        this.resolve();
      }
    } catch (exc) {
      this.reject(exc);
    }
  }
}

/** Resolves with ms from ``started`` to the audio element's first ``playing`` event (null if it fails). */
function firstPlaying(audio, started) {
  return new Promise((resolve) => {
    const playing = () => {
      audio.removeEventListener("error", failed);
      resolve(performance.now() - started);
    };
    const failed = () => {
      audio.removeEventListener("playing", playing);
      resolve(null);
    };
    audio.addEventListener("playing", playing, { once: true });
    audio.addEventListener("error", failed, { once: true });
  });
}

async function speak(form) {
  const built = request(form);
  if (built.error) throw new Error(`field 'reference': ${built.error}`);
  const stream = $("speak-stream").checked;
  const format = built.format || "wav";
  const audio = $("speak-audio");
  audio.pause();
  const started = performance.now();
  const response = await api(stream ? "/tts/stream" : "/tts", { method: "POST", json: built.json, form: built.form, raw: true });
  const player = stream && progressive(format) ? new StreamPlayer(audio) : null;
  const playback = stream ? firstPlaying(audio, started) : null;
  const reader = response.body.getReader();
  const chunks = [];
  let firstChunk = null;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (firstChunk === null) firstChunk = performance.now() - started;
    chunks.push(value);
    if (player) player.push(value);
  }
  const total = performance.now() - started;
  const headers = response.headers;
  const raw = new Blob(chunks, { type: headers.get("content-type") || "application/octet-stream" });
  const sampleRate = Number(headers.get("x-sample-rate")) || 24000;
  const downloadUrl = URL.createObjectURL(raw);
  const download = $("speak-download");
  if (download.href.startsWith("blob:")) URL.revokeObjectURL(download.href);
  download.href = downloadUrl;
  download.download = `speech.${format}`;
  if (!player) {
    setAudio(audio, URL.createObjectURL(await playable(raw, format, sampleRate)));
    if (stream) audio.play().catch(() => {});
  }

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
  if (stream) stat(list, "Playback", player ? "progressive (played as the chunks arrived)" : "collected, then played");
  stat(list, stream ? "Time to first audio chunk" : "Time to audio (whole file)", seconds(firstChunk / 1000));
  const playbackTerm = h("dd", { id: "speak-first-playback" }, "…");
  if (stream) list.append(h("dt", {}, "Time to first playback"), playbackTerm);
  stat(list, "Total time", seconds(total / 1000));
  const durationTerm = h("dd", {}, "…");
  const rtfTerm = h("dd", {}, "…");
  list.append(h("dt", {}, "Audio duration"), durationTerm, h("dt", {}, "Real-time factor (total time / audio)"), rtfTerm);
  if (headers.get("x-real-time-factor")) stat(list, "Server real-time factor", headers.get("x-real-time-factor"));
  $("speak-result").hidden = false;
  if (playback) {
    playback.then((ms) => {
      playbackTerm.textContent = seconds(ms === null ? null : ms / 1000);
      if (ms !== null) playbackTerm.dataset.ms = String(ms);
    });
  }

  let duration;
  if (player) {
    try {
      await player.end();
      duration = Number.isFinite(audio.duration) ? audio.duration : null;
    } catch (exc) {
      durationTerm.textContent = "–";
      rtfTerm.textContent = "–";
      throw new Error(`progressive playback failed (${exc.message}); use the download link`);
    }
  } else {
    duration = await new Promise((resolve) => {
      const done = () => resolve(Number.isFinite(audio.duration) ? audio.duration : Number(headers.get("x-audio-seconds")) || null);
      if (audio.readyState >= 1) done();
      else {
        audio.addEventListener("loadedmetadata", done, { once: true });
        audio.addEventListener("error", () => resolve(Number(headers.get("x-audio-seconds")) || null), { once: true });
      }
    });
  }
  durationTerm.textContent = seconds(duration);
  rtfTerm.textContent = duration ? (total / 1000 / duration).toFixed(2) : "–";
}

function describeStreaming() {
  const format = $("speak-format").value;
  $("speak-stream-info").textContent = progressive(format)
    ? `Streaming ${format.toUpperCase()} plays as the chunks arrive (Media Source Extensions); the time to first chunk and to first playback are measured.`
    : `Streaming ${format.toUpperCase()} is collected and played when the last chunk has arrived (progressive playback is used for MP3 only); the time to first chunk is measured.`;
}

/** Why recording could not start, in words. */
function microphoneError(exc) {
  if (exc.name === "NotAllowedError" || exc.name === "SecurityError") {
    return "Microphone permission was refused: allow the microphone for this page in the browser's site settings, or choose a file.";
  }
  if (exc.name === "NotFoundError" || exc.name === "OverconstrainedError") return "No microphone was found: connect one, or choose a file.";
  if (exc.name === "NotReadableError") return "The microphone could not be opened (is another program using it?).";
  return `Recording could not start (${exc.name}: ${exc.message}).`;
}

/** Record / Stop: a microphone recording (webm/opus) becomes the reference file input's file. */
function initRecorder() {
  const record = $("speak-record");
  const stop = $("speak-record-stop");
  const status = $("speak-record-status");
  const input = $("speak-reference");
  let recorder = null;
  record.addEventListener("click", async () => {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.MediaRecorder) {
      status.textContent = "This browser cannot record here (recording needs https or localhost); choose a file.";
      return;
    }
    record.disabled = true;
    let media;
    try {
      media = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (exc) {
      status.textContent = microphoneError(exc);
      record.disabled = false;
      return;
    }
    const chunks = [];
    const type = MediaRecorder.isTypeSupported(RECORDING_TYPE) ? RECORDING_TYPE : "";
    recorder = new MediaRecorder(media, type ? { mimeType: type } : {});
    recorder.addEventListener("dataavailable", (event) => {
      if (event.data.size) chunks.push(event.data);
    });
    const begun = performance.now();
    const tick = () => {
      const text = `Recording… ${Math.floor((performance.now() - begun) / 1000)} s`;
      if (status.textContent !== text) status.textContent = text;
    };
    tick();
    const timer = setInterval(tick, 250);
    recorder.addEventListener("stop", () => {
      clearInterval(timer);
      media.getTracks().forEach((track) => track.stop());
      const elapsed = (performance.now() - begun) / 1000;
      const blobType = (recorder.mimeType || "audio/webm").split(";")[0];
      recorder = null;
      stop.disabled = true;
      record.disabled = false;
      record.focus();
      status.textContent = `Recorded ${elapsed.toFixed(1)} s; it is the reference for the next Speak.`;
      const transfer = new DataTransfer();
      transfer.items.add(new File(chunks, "recording.webm", { type: blobType }));
      input.files = transfer.files;
      input.dispatchEvent(new Event("change", { bubbles: true }));
    }, { once: true });
    recorder.start(250);
    stop.disabled = false;
    stop.focus();
  });
  stop.addEventListener("click", () => {
    if (recorder && recorder.state !== "inactive") recorder.stop();
  });
}

export function initSpeak() {
  const form = $("speak-form");
  $("speak-profile").addEventListener("change", applyProfile);
  $("speak-voice").addEventListener("change", () => {
    $("speak-reference-box").hidden = $("speak-voice").value !== UPLOAD_VOICE;
  });
  $("speak-reference").addEventListener("change", () => checkReferences([...$("speak-reference").files], $("speak-reference-info")));
  $("speak-format").addEventListener("change", describeStreaming);
  describeStreaming();
  initRecorder();
  onSubmit({ form, button: $("speak-submit"), error: $("speak-error"), hints: HINTS }, () => speak(form));
}

/** Select a voice in the Speak form (used by the Voices view). */
export function useVoice(voiceId) {
  $("speak-voice").value = voiceId;
  $("speak-voice").dispatchEvent(new Event("change"));
}
