// The queue of off-network blocks waiting to reach the backend, as plain state transitions
// (the service worker keeps the state in chrome.storage.local between steps).
//
// Exactly once: a batch is sealed (given an id and a fixed list of hits) and stored before
// it is first sent, and it is resent unchanged until the backend acknowledges it. The
// backend writes each batch id once, so a resend after a lost reply is not doubled.

export const MAX_BATCH = 25;
export const MAX_QUEUED = 2000;
export const FIRST_RETRY_MS = 1000;
export const MAX_RETRY_MS = 30000;

export function emptyQueue() {
  return { pending: [], sealed: null, failures: 0, retryAt: 0 };
}

/** A queue read back from storage; anything malformed is replaced by an empty queue. */
export function loadQueue(stored) {
  if (!stored || typeof stored !== "object" || !Array.isArray(stored.pending)) {
    return emptyQueue();
  }
  const sealed = stored.sealed && typeof stored.sealed.batchId === "string"
    && Array.isArray(stored.sealed.hits) ? stored.sealed : null;
  return {
    pending: stored.pending.filter((h) => h && typeof h.id === "string"),
    sealed,
    failures: Number.isInteger(stored.failures) ? stored.failures : 0,
    retryAt: Number.isFinite(stored.retryAt) ? stored.retryAt : 0,
  };
}

/** Add a hit; the oldest unsent hits are dropped beyond MAX_QUEUED. */
export function enqueue(queue, hit) {
  const known = queue.pending.some((h) => h.id === hit.id)
    || (queue.sealed?.hits ?? []).some((h) => h.id === hit.id);
  if (known) return queue;
  const pending = [...queue.pending, hit].slice(-MAX_QUEUED);
  return { ...queue, pending };
}

/** The batch to send now (sealing one if needed), or null when empty or backing off. */
export function nextBatch(queue, now, newBatchId) {
  if (queue.retryAt > now) return { queue, batch: null };
  if (queue.sealed) return { queue, batch: queue.sealed };
  if (queue.pending.length === 0) return { queue, batch: null };
  const sealed = { batchId: newBatchId(), hits: queue.pending.slice(0, MAX_BATCH) };
  return { queue: { ...queue, sealed, pending: queue.pending.slice(MAX_BATCH) }, batch: sealed };
}

/** The backend wrote (or had already written) the batch. */
export function acknowledge(queue, batchId) {
  if (!queue.sealed || queue.sealed.batchId !== batchId) return queue;
  return { ...queue, sealed: null, failures: 0, retryAt: 0 };
}

/** Sending failed (network, 5xx): back off exponentially, up to MAX_RETRY_MS. */
export function failed(queue, now) {
  const failures = queue.failures + 1;
  const delay = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** (failures - 1));
  return { ...queue, failures, retryAt: now + delay };
}

/** The backend refused the batch as invalid (4xx other than 401/429): drop it. */
export function rejected(queue, batchId) {
  return acknowledge(queue, batchId);
}

export function queuedCount(queue) {
  return queue.pending.length + (queue.sealed?.hits.length ?? 0);
}
