import { test } from "node:test";
import assert from "node:assert/strict";
import { messageProblem } from "../lib/messages.js";

const ID = "abcdefghijklmnopabcdefghijklmnop";
const ORIGIN = `chrome-extension://${ID}`;
const popup = { id: ID, url: `${ORIGIN}/popup.html` };
const TICKET = "0123456789abcdef0123456789abcdef";
const block = { id: ID, url: `${ORIGIN}/block.html?t=${TICKET}` };

test("the popup may sign in and the block page may ask for a review", () => {
  assert.equal(messageProblem({ type: "signIn", username: "learner1", password: "pw" }, popup, ID, ORIGIN), null);
  assert.equal(messageProblem({ type: "askReview", ticket: TICKET, reason: "course" }, block, ID, ORIGIN), null);
  assert.equal(messageProblem({ type: "explainBlock", ticket: TICKET }, block, ID, ORIGIN), null);
});

test("messages from other extensions, web pages or the wrong page are refused", () => {
  const msg = { type: "signIn", username: "learner1", password: "pw" };
  assert.match(messageProblem(msg, { id: "other", url: `${ORIGIN}/popup.html` }, ID, ORIGIN), /not from this extension/);
  assert.match(messageProblem(msg, { id: ID, url: "https://evil.example/popup.html" }, ID, ORIGIN), /extension page/);
  assert.match(messageProblem(msg, block, ID, ORIGIN), /not accepted from block.html/);
  assert.match(messageProblem({ type: "askReview", ticket: TICKET, reason: "r" }, popup, ID, ORIGIN), /not accepted/);
});

test("malformed messages are refused with the field named", () => {
  assert.match(messageProblem({ type: "nope" }, popup, ID, ORIGIN), /unknown/);
  assert.match(messageProblem(null, popup, ID, ORIGIN), /not an object/);
  assert.match(messageProblem({ type: "signIn", username: "x y", password: "p" }, popup, ID, ORIGIN), /username/);
  assert.match(messageProblem({ type: "signIn", username: "a", password: "p", extra: 1 }, popup, ID, ORIGIN), /unexpected field extra/);
  assert.match(messageProblem({ type: "askReview", ticket: "nope", reason: "r" }, block, ID, ORIGIN), /ticket/);
  assert.match(messageProblem({ type: "askReview", ticket: TICKET, reason: "  " }, block, ID, ORIGIN), /reason/);
  // the block page cannot name what it shows or reports: only the worker's ticket does
  assert.match(messageProblem({ type: "explainBlock", ticket: TICKET, url: "https://x.example/" }, block, ID, ORIGIN), /unexpected field url/);
  assert.match(messageProblem({ type: "reportAccident", ticket: TICKET, whatHappened: "x", hitId: "20261122-7KQ2X9AB" }, block, ID, ORIGIN), /unexpected field hitId/);
  assert.match(messageProblem({ type: "toString" }, popup, ID, ORIGIN), /unknown/);
});
