import { test } from "node:test";
import assert from "node:assert/strict";
import * as api from "../lib/api_requests.js";
import { managedDeviceId } from "../lib/managed_device.js";

const BASE = "https://esafety.example";
const CHROMEBOOK = "0f4e5c1a-93b2-4d7e-8a61-2b9c7d3e4f50";

// chrome.enterprise.deviceAttributes as ChromeOS offers it to a force-installed extension:
// the id comes to a callback.
const managedChromebook = { enterprise: { deviceAttributes: {
  getDirectoryDeviceId: (callback) => callback(CHROMEBOOK) } } };

test("a managed Chromebook's device id is used where the policy grants it", async () => {
  assert.equal(await managedDeviceId(managedChromebook), CHROMEBOOK);
  const body = JSON.parse(api.deviceRequest(BASE, "t", "a".repeat(32), "04ab", CHROMEBOOK).init.body);
  assert.deepEqual(body, { device_id: "a".repeat(32), public_key: "04ab", managed_device_id: CHROMEBOOK });
});

test("elsewhere the install id alone is sent", async () => {
  assert.equal(await managedDeviceId(undefined), "");
  assert.equal(await managedDeviceId({}), "");
  // not granted (an unmanaged device answers an empty id) or not of the expected shape
  for (const answer of ["", "short", "has spaces in it here", 42]) {
    const chromeApi = { enterprise: { deviceAttributes: { getDirectoryDeviceId: (cb) => cb(answer) } } };
    assert.equal(await managedDeviceId(chromeApi), "", String(answer));
  }
  const refusing = { enterprise: { deviceAttributes: { getDirectoryDeviceId: () => { throw new Error("no"); } } } };
  assert.equal(await managedDeviceId(refusing), "");
  const body = JSON.parse(api.deviceRequest(BASE, "t", "a".repeat(32), "04ab", "").init.body);
  assert.deepEqual(body, { device_id: "a".repeat(32), public_key: "04ab" });
});
