// Small DOM helpers: element building, error placement next to controls, files, formatting.

/** Build an element: h("a", {href: "#", class: "x"}, "text", child). Attributes starting with "on" are listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const $ = (id) => document.getElementById(id);

/** Give every named control of a form an error slot right after it (aria-describedby, aria-live). */
export function prepareForm(form) {
  for (const control of form.querySelectorAll("[name]")) {
    if (control.type === "radio" || control.type === "checkbox" || !control.id) continue;
    const slot = h("p", { class: "field-error", id: `${control.id}-error`, "aria-live": "polite" });
    const anchor = control.closest(".dropzone") || control;
    anchor.after(slot);
    control.setAttribute("aria-describedby", slot.id);
  }
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The control of ``form`` an API message is about: "field 'x'", "'x'", "x:" or a hint pattern. */
function controlFor(form, message, hints = {}) {
  const controls = [...form.querySelectorAll("[name]")].filter((c) => c.id && c.type !== "radio");
  for (const control of controls) {
    const name = escapeRegExp(control.name);
    const patterns = [new RegExp(`field '${name}'`), new RegExp(`'${name}'`), new RegExp(`(^|[;:] )${name}(:| is )`)];
    if (patterns.some((p) => p.test(message))) return control;
  }
  for (const [name, pattern] of Object.entries(hints)) {
    const control = form.querySelector(`[name="${name}"]`);
    if (control && pattern.test(message)) return control;
  }
  return null;
}

export function clearErrors(form, formError) {
  for (const slot of form.querySelectorAll(".field-error")) slot.textContent = "";
  for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
  if (formError) {
    formError.textContent = "";
    formError.classList.remove("ok");
  }
}

/** A success message in a form's message element. */
export function showOk(formError, text) {
  formError.textContent = text;
  formError.classList.add("ok");
}

function describe(error) {
  const id = error.requestId ? ` (request ${error.requestId})` : "";
  return `${error.message}${id}`;
}

/**
 * Show an API error next to the control it names (or next to the form's button when it names none).
 * @param {HTMLFormElement} form
 * @param {HTMLElement} formError - the form-level message element.
 * @param {Error} error
 * @param {object} hints - field name -> RegExp for messages that do not quote the field.
 */
export function showFormError(form, formError, error, hints = {}) {
  const control = form ? controlFor(form, error.message || "", hints) : null;
  const slot = control ? document.getElementById(`${control.id}-error`) : null;
  if (slot) {
    slot.textContent = describe(error);
    control.setAttribute("aria-invalid", "true");
    formError.textContent = "See the message next to the field above.";
    control.focus({ preventScroll: false });
  } else {
    formError.textContent = describe(error);
  }
}

export function showError(target, error) {
  target.textContent = error ? describe(error) : "";
}

/** Let a .dropzone accept dropped files into its file input (keeps the input usable by keyboard). */
export function dropZone(zone, onFiles) {
  const input = document.getElementById(zone.dataset.input);
  const stop = (event) => {
    event.preventDefault();
    event.stopPropagation();
  };
  ["dragenter", "dragover"].forEach((type) => zone.addEventListener(type, (e) => { stop(e); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((type) => zone.addEventListener(type, (e) => { stop(e); zone.classList.remove("over"); }));
  zone.addEventListener("drop", (event) => {
    const transfer = new DataTransfer();
    for (const file of event.dataTransfer.files) transfer.items.add(file);
    input.files = transfer.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  });
  input.addEventListener("change", () => onFiles([...input.files]));
}

/** Duration of an audio file in seconds, decoded in the browser (null when it cannot be decoded). */
export async function audioDuration(file) {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return null;
  const context = new Context();
  try {
    const buffer = await context.decodeAudioData(await file.arrayBuffer());
    return buffer.duration;
  } catch {
    return null;
  } finally {
    context.close();
  }
}

export function seconds(value, digits = 2) {
  return value === null || value === undefined || Number.isNaN(value) ? "–" : `${Number(value).toFixed(digits)} s`;
}

export function bytes(value) {
  if (!value) return "0 B";
  const units = ["B", "KB", "MB", "GB", "TB"];
  const power = Math.min(units.length - 1, Math.floor(Math.log10(value) / 3));
  return `${(value / 1000 ** power).toFixed(power ? 1 : 0)} ${units[power]}`;
}

export function when(epochSeconds) {
  return epochSeconds ? new Date(epochSeconds * 1000).toLocaleString() : "–";
}

/** Set an <audio> element's source to a new object URL, releasing the previous one. */
export function setAudio(audio, url) {
  if (audio.dataset.objectUrl) URL.revokeObjectURL(audio.dataset.objectUrl);
  audio.dataset.objectUrl = url;
  audio.src = url;
}

/** Read a form's non-empty values as numbers / strings / booleans for a JSON body. */
export function formValues(form, names) {
  const values = {};
  for (const name of names) {
    const control = form.elements.namedItem(name);
    if (!control) continue;
    if (control.type === "checkbox") {
      if (control.checked) values[name] = true;
    } else if (control.value.trim() !== "") {
      values[name] = control.type === "number" ? Number(control.value) : control.value.trim();
    }
  }
  return values;
}

/** A table from rows: columns is [[header, (row) => cell content], ...]. */
export function table(columns, rows, caption) {
  return h(
    "table",
    {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, columns.map(([title]) => h("th", { scope: "col" }, title)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(row)))))),
  );
}

/**
 * Handle a form's submit: clear its errors, run ``action`` with ``button`` busy, show what it throws.
 * @param {object} spec - form, button, error (the form-level message element), hints (see showFormError).
 */
export function onSubmit({ form, button, error, hints = {} }, action) {
  prepareForm(form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form, error);
    await busy(button, async () => {
      try {
        await action();
      } catch (exc) {
        showFormError(form, error, exc, hints);
      }
    });
  });
}

/** Repeats a refresh while its view is visible: ``later(fn)`` schedules, ``hide()`` stops. */
export function poller(intervalMs) {
  let timer = null;
  return {
    visible: false,
    later(fn) {
      clearTimeout(timer);
      if (this.visible) timer = setTimeout(fn, intervalMs);
    },
    show() {
      this.visible = true;
    },
    hide() {
      this.visible = false;
      clearTimeout(timer);
    },
  };
}

/** Run ``fn`` with ``button`` disabled and marked busy. */
export async function busy(button, fn) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await fn();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}
