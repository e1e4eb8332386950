// Accident reports waiting to reach the backend. A report made while the backend cannot be
// reached is kept (in chrome.storage.local) and sent once it can be, oldest first, with
// the same back-off as the hit queue. Each report has a key so a resend replaces nothing.

import { FIRST_RETRY_MS, MAX_RETRY_MS } from "./hit_queue.js";

export const MAX_REPORTS = 200;

export function emptyQueue() {
  return { reports: [], failures: 0, retryAt: 0 };
}

export function loadQueue(stored) {
  if (!stored || typeof stored !== "object" || !Array.isArray(stored.reports)) return emptyQueue();
  return {
    reports: stored.reports.filter((r) => r && typeof r.key === "string"
      && typeof r.whatHappened === "string"),
    failures: Number.isInteger(stored.failures) ? stored.failures : 0,
    retryAt: Number.isFinite(stored.retryAt) ? stored.retryAt : 0,
  };
}

export function enqueue(queue, report, key) {
  return { ...queue, reports: [...queue.reports, { ...report, key }].slice(-MAX_REPORTS) };
}

/** The report to send now, or null when none waits or the queue is backing off. */
export function next(queue, now) {
  if (queue.retryAt > now || queue.reports.length === 0) return null;
  return queue.reports[0];
}

export function acknowledge(queue, key) {
  return { reports: queue.reports.filter((r) => r.key !== key), failures: 0, retryAt: 0 };
}

export function failed(queue, now) {
  const failures = queue.failures + 1;
  return { ...queue, failures,
    retryAt: now + Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** (failures - 1)) };
}

export function queuedCount(queue) {
  return queue.reports.length;
}
