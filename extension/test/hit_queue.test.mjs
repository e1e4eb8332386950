import { test } from "node:test";
import assert from "node:assert/strict";
import * as q from "../lib/hit_queue.js";

const hit = (n) => ({ id: `20261122-AAAAAA${String(n).padStart(2, "0")}`, ts: 1, url: "https://x.example/", category: "gambling" });
let counter = 0;
const newId = () => `batch-${++counter}`;

test("a failed batch is resent unchanged, so the backend can write it exactly once", () => {
  let queue = q.enqueue(q.emptyQueue(), hit(1));
  let step = q.nextBatch(queue, 1000, newId);
  const first = step.batch;
  queue = q.failed(q.enqueue(step.queue, hit(2)), 1000);
  assert.equal(q.nextBatch(queue, 1500, newId).batch, null); // backing off
  step = q.nextBatch(queue, 2000, newId);
  assert.deepEqual(step.batch, first); // same id, same hits; the new hit waits
  queue = q.acknowledge(step.queue, first.batchId);
  step = q.nextBatch(queue, 2000, newId);
  assert.deepEqual(step.batch.hits.map((h) => h.id), [hit(2).id]);
  assert.notEqual(step.batch.batchId, first.batchId);
  queue = q.acknowledge(step.queue, step.batch.batchId);
  assert.equal(q.queuedCount(queue), 0);
});

test("retries back off exponentially up to a cap", () => {
  let queue = q.nextBatch(q.enqueue(q.emptyQueue(), hit(1)), 0, newId).queue;
  const delays = [];
  for (let i = 0; i < 8; i += 1) {
    queue = q.failed(queue, 0);
    delays.push(queue.retryAt);
  }
  assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
});

test("batches hold at most MAX_BATCH hits and the same hit is queued once", () => {
  let queue = q.emptyQueue();
  for (let i = 0; i < q.MAX_BATCH + 5; i += 1) queue = q.enqueue(queue, hit(i));
  queue = q.enqueue(queue, hit(0));
  assert.equal(q.queuedCount(queue), q.MAX_BATCH + 5);
  const step = q.nextBatch(queue, 0, newId);
  assert.equal(step.batch.hits.length, q.MAX_BATCH);
  assert.equal(step.queue.pending.length, 5);
});

test("a queue read back from storage survives garbage", () => {
  assert.deepEqual(q.loadQueue(null), q.emptyQueue());
  assert.deepEqual(q.loadQueue({ pending: "x" }), q.emptyQueue());
  const kept = q.loadQueue({ pending: [hit(1), 7], sealed: { batchId: "b", hits: [hit(2)] }, failures: 2, retryAt: 5 });
  assert.equal(kept.pending.length, 1);
  assert.equal(kept.sealed.batchId, "b");
});
