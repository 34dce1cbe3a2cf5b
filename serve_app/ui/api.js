// HTTP access to the service: the API key (sessionStorage only), JSON errors, the page's error log.

const KEY_NAME = "avs-api-key";
const MAX_LOGGED = 30;
const errorLog = [];
const errorListeners = new Set();
let pendingKey = null;

/** An error answered by the API ({"error": {"message", "type", "request_id"}}) or a network failure. */
export class ApiError extends Error {
  constructor(message, { status = 0, type = "network_error", requestId = null, path = "" } = {}) {
    super(message);
    this.status = status;
    this.type = type;
    this.requestId = requestId;
    this.path = path;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_NAME);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_NAME);
}

/** Errors the page has seen, newest first. */
export function recentErrors() {
  return errorLog.slice();
}

export function onError(listener) {
  errorListeners.add(listener);
}

function remember(error) {
  errorLog.unshift({ at: new Date(), message: error.message, status: error.status, type: error.type,
    requestId: error.requestId, path: error.path });
  errorLog.length = Math.min(errorLog.length, MAX_LOGGED);
  errorListeners.forEach((listener) => listener(errorLog));
  return error;
}

/**
 * Ask the person for a key in the key dialog; concurrent callers share one prompt.
 * Resolves when a key was entered, rejects when the dialog is cancelled.
 */
export function askForKey(message) {
  if (pendingKey) return pendingKey;
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  document.getElementById("key-message").textContent = message;
  input.value = "";
  pendingKey = new Promise((resolve, reject) => {
    const done = (ok) => {
      dialog.removeEventListener("close", onClose);
      document.getElementById("key-cancel").onclick = null;
      pendingKey = null;
      if (ok) resolve(); else reject(new ApiError("no API key entered: this service needs one (click \"API key\")", { status: 401, type: "authentication_error" }));
    };
    const onClose = () => {
      const key = input.value.trim();
      if (dialog.returnValue === "save" && key) {
        sessionStorage.setItem(KEY_NAME, key);
        done(true);
      } else {
        done(false);
      }
    };
    dialog.addEventListener("close", onClose);
    document.getElementById("key-cancel").onclick = () => dialog.close("cancel");
    dialog.returnValue = "";
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
  return pendingKey;
}

async function toApiError(response, path) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = body && body.error ? body.error : {};
  const message = error.message || `${response.status} ${response.statusText || "error"} from ${path}`;
  return new ApiError(message, {
    status: response.status,
    type: error.type || "http_error",
    requestId: error.request_id || response.headers.get("x-request-id"),
    path,
  });
}

/**
 * Call the API. On 401 the key dialog opens and the call is retried with the new key.
 *
 * @param {string} path - e.g. "/voices".
 * @param {object} options - method, json (a body to send as JSON), form (FormData), raw (return the Response).
 * @returns the parsed JSON, null for 204, or the Response when raw is set.
 * @throws {ApiError} with the API's message; also recorded for the Status view.
 */
export async function api(path, { method = "GET", json, form, raw = false, signal } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const headers = {};
    const key = apiKey();
    if (key) headers.Authorization = `Bearer ${key}`;
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form) {
      body = form;
    }
    let response;
    try {
      response = await fetch(path, { method, headers, body, signal });
    } catch (exc) {
      if (exc.name === "AbortError") throw exc;
      throw remember(new ApiError(`could not reach the service (${exc.message})`, { path }));
    }
    if (response.status === 401 && attempt < 3) {
      if (apiKey() && apiKey() !== key) continue; // a key was entered while this request was on its way
      const refused = key ? "The key was refused; enter a valid API key." : "This service needs an API key.";
      try {
        await askForKey(refused);
      } catch (exc) {
        throw remember(Object.assign(exc, { path }));
      }
      continue;
    }
    if (!response.ok) throw remember(await toApiError(response, path));
    if (raw) return response;
    if (response.status === 204) return null;
    return response.json();
  }
}

/** Fetch an audio (or any) URL with the key and return an object URL for it. */
export async function blobUrl(path) {
  const response = await api(path, { raw: true });
  return URL.createObjectURL(await response.blob());
}

export { remember as logError };
