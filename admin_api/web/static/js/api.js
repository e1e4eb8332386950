// Calls to the JSON API under /api/v1 with the session cookie.
// Cookie-authenticated writes must send X-CSRF-Token = the esafety_csrf cookie (sessions.py).

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

function cookieValue(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

/** Whether the browser holds a session (the CSRF cookie comes and goes with it). */
export function hasSession() {
  return cookieValue("esafety_csrf") !== "";
}

/** An API address with the non-empty query values. */
export function apiUrl(path, query = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && String(value).trim() !== "") {
      url.searchParams.set(name, String(value).trim());
    }
  }
  return url.pathname + url.search;
}

export async function apiRequest(method, path, { query = {}, body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = cookieValue("esafety_csrf");
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(apiUrl(path, query), {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network", "The server could not be reached. Check the connection and try again.");
  }
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("application/json") ? await response.json() : await response.text();
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || "error",
      error.message || `The server answered ${response.status}.`, error.field);
  }
  return data;
}

export const apiGet = (path, query) => apiRequest("GET", path, { query });
export const apiPost = (path, body = {}) => apiRequest("POST", path, { body });
export const apiDelete = (path) => apiRequest("DELETE", path);

/** Every page of a list route (items + next_cursor), up to `max` items. */
export async function apiGetAll(path, query = {}, max = 2000) {
  const items = [];
  let cursor = "";
  do {
    const page = await apiGet(path, { ...query, limit: 500, cursor });
    items.push(...page.items);
    cursor = page.next_cursor || "";
  } while (cursor && items.length < max);
  return items;
}

/** Send a file as the request body (with the CSRF header), e.g. a list tarball. */
export async function apiUpload(path, file, contentType = "application/octet-stream") {
  let response;
  try {
    response = await fetch(path, {
      method: "POST", credentials: "same-origin", body: file,
      headers: { Accept: "application/json", "Content-Type": contentType,
        "X-CSRF-Token": cookieValue("esafety_csrf"), "X-File-Name": file.name || "" },
    });
  } catch {
    throw new ApiError(0, "network", "The server could not be reached. Check the connection and try again.");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || "error",
      error.message || `The server answered ${response.status}.`, error.field);
  }
  return data;
}
