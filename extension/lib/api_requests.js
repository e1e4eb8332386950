// HTTP requests to the esafety admin API, each built as {url, init} for fetch(). The bearer
// token goes in the Authorization header; cookies are never sent (credentials: "omit").
// (An "unblock request" is the learner's request for a site to be reviewed: see
// fileUnblockRequest and listMyUnblockRequests.)

function request(base, path, { token = null, method = "GET", body = undefined, headers: extra = {} } = {}) {
  const headers = { Accept: "application/json", ...extra };
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return { url: `${base}${path}`, init };
}

export function loginRequest(base, username, password) {
  return request(base, "/api/v1/auth/login", { method: "POST", body: { username, password } });
}

export function logoutRequest(base, token) {
  return request(base, "/api/v1/auth/logout", { token, method: "POST" });
}

export function fileAccidentReport(base, token, { hitId, url, whatHappened }) {
  const body = { what_happened: whatHappened };
  if (hitId) body.hit_id = hitId;
  if (url) body.url = url;
  return request(base, "/api/v1/accident-reports", { token, method: "POST", body });
}

export function fileUnblockRequest(base, token, { hitId, url, reason }) {
  const body = { url, reason };
  if (hitId) body.hit_id = hitId;
  return request(base, "/api/v1/unblock-requests", { token, method: "POST", body });
}

export function listMyUnblockRequests(base, token) {
  return request(base, "/api/v1/unblock-requests?limit=10", { token });
}

export function rulesRequest(base, token, since) {
  const query = since ? `?since=${encodeURIComponent(since)}` : "";
  return request(base, `/api/v1/extension/rules${query}`, { token });
}

/** The strictest profile's rules, for a browser nobody valid is signed in to. */
export function unsignedRulesRequest(base, since) {
  const query = since ? `?since=${encodeURIComponent(since)}` : "";
  return request(base, `/api/v1/extension/unsigned-rules${query}`);
}

/** Register this install after sign-in: a refresh token, the hit key and the probe key.
 * `managedDeviceId`, the ChromeOS device id where the policy grants it, is the device the
 * centre's access log then shows. */
export function deviceRequest(base, token, deviceId, publicKey, managedDeviceId = "") {
  const body = { device_id: deviceId, public_key: publicKey };
  if (managedDeviceId) body.managed_device_id = managedDeviceId;
  return request(base, "/api/v1/extension/devices", { token, method: "POST", body });
}

/** A new bearer token for this install (after a browser restart, or when one expires),
 * proven with the install's device key (see device_key.js). */
export function sessionRequest(base, deviceId, refreshToken, proof) {
  return request(base, "/api/v1/extension/session", { method: "POST",
    body: { device_id: deviceId, refresh_token: refreshToken, ts: proof.ts, sig: proof.sig } });
}

/** Sign this install out: its refresh token stops working. */
export function forgetDeviceRequest(base, token, deviceId) {
  return request(base, "/api/v1/extension/devices/current", { token, method: "DELETE",
    headers: { "X-Esafety-Device": deviceId } });
}

export function checkRequest(base, token, url, { recent = false } = {}) {
  const query = new URLSearchParams({ url });
  if (recent) query.set("recent", "true");
  return request(base, `/api/v1/extension/check?${query}`, { token });
}

export function hitsRequest(base, token, deviceId, batch) {
  return request(base, "/api/v1/extension/hits", {
    token, method: "POST",
    body: { batch_id: batch.batchId, device_id: deviceId,
      hits: batch.hits.map((h) => ({ id: h.id, ts: h.ts, url: h.url, category: h.category,
        nav_token: h.navToken })) },
  });
}

/** The API's error message from a JSON error body, or a plain fallback. */
export function errorMessage(status, body) {
  const message = body?.error?.message;
  if (typeof message === "string" && message) return message;
  return status === 0 ? "The centre's server cannot be reached just now."
    : `The centre's server answered ${status}.`;
}
