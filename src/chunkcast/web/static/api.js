// The JSON API as the pages use it: calls, errors, the admin token, small page helpers.

const TOKEN_KEY = "chunkcast.adminToken";

/** An API (or network) failure; `message` is meant for people. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function adminToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return ""; // storage disabled: the token has to be typed on each page
  }
}

function storeToken(token) {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: nothing to keep
  }
}

/** The message of an error body `{error: {code, message}}`, or null. */
export function errorMessage(text) {
  try {
    const message = JSON.parse(text)?.error?.message;
    return typeof message === "string" ? message : null;
  } catch {
    return null;
  }
}

/**
 * Call the API. `admin` adds the admin token (an ApiError with code "no_token" when none is
 * saved). Resolves to the JSON body (null for an empty one); rejects with an ApiError.
 */
export async function api(path, { method = "GET", body, admin = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (admin) {
    const token = adminToken() || tokenField?.value.trim();
    if (!token) {
      throw new ApiError(0, "no_token", "Enter the admin token first (chunkcast up prints it).");
    }
    headers.Authorization = `Bearer ${token}`;
  }
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, "network", `Could not reach the server: ${error.message}`);
  }
  const text = await response.text();
  if (!response.ok) {
    const message = errorMessage(text) || `${response.status} ${response.statusText}`;
    const code = response.status === 401 ? "unauthorized" : "http_error";
    throw new ApiError(response.status, code, message);
  }
  return text ? JSON.parse(text) : null;
}

/** Show `error` in the alert element `where`; token problems also reopen the token field. */
export function showError(where, error) {
  let message = error instanceof Error ? error.message : String(error);
  if (error instanceof ApiError && error.status) message = `${message} (HTTP ${error.status})`;
  if (error instanceof ApiError && (error.status === 401 || error.code === "no_token")) {
    if (error.status === 401) message = `The admin token was refused: ${message}`;
    openTokenForm();
  }
  where.textContent = message;
  where.hidden = false;
}

export function clearError(where) {
  where.textContent = "";
  where.hidden = true;
}

// --- the admin token form (templates/_admin_token.html) ------------------------------------

let tokenField = null;
let openTokenForm = () => {};

/** Wire the admin token form of the page: saved once, changeable, forgettable. */
export function installTokenForm(root = document) {
  const form = root.querySelector("[data-token-form]");
  const saved = root.querySelector("[data-token-saved]");
  if (!form || !saved) return;
  tokenField = form.querySelector("input");
  const show = (editing) => {
    form.hidden = !editing;
    saved.hidden = editing;
  };
  openTokenForm = () => {
    show(true);
    tokenField.focus();
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = tokenField.value.trim();
    if (!token) {
      tokenField.focus();
      return;
    }
    storeToken(token);
    tokenField.value = "";
    show(false);
    saved.querySelector("[data-token-change]").focus();
  });
  saved.querySelector("[data-token-change]").addEventListener("click", openTokenForm);
  saved.querySelector("[data-token-forget]").addEventListener("click", () => {
    storeToken("");
    openTokenForm();
  });
  show(!adminToken());
}

// --- small helpers ------------------------------------------------------------------------

/** Copy `text` to the clipboard; falls back to a selection outside secure contexts. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // denied: try the old way
    }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  let copied = false;
  try {
    copied = document.execCommand("copy");
  } catch {
    copied = false;
  }
  area.remove();
  return copied;
}

/** "3 s ago", "2 min ago" … for a Date in the past. */
export function ago(date, now = Date.now()) {
  const seconds = Math.max(0, Math.round((now - date.getTime()) / 1000));
  if (seconds < 90) return `${seconds} s ago`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 90) return `${minutes} min ago`;
  return `${Math.round(minutes / 60)} h ago`;
}

/** Quote `word` for a POSIX shell when it needs it. */
export function shellQuote(word) {
  if (/^[\w@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replaceAll("'", "'\\''")}'`;
}
