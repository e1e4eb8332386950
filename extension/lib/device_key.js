// This install's device key: an ECDSA P-256 key pair made once, with a private key that
// cannot be exported (WebCrypto keeps it inside the browser; it is stored as a CryptoKey in
// IndexedDB, never as bytes). The backend binds the refresh token to its public half, so a
// refresh token copied out of chrome.storage.local is useless anywhere else.

const DB = "esafety-device";
const STORE = "keys";
const NAME = "device";
const ALGORITHM = { name: "ECDSA", namedCurve: "P-256" };

function request(operation) {
  return new Promise((resolve, reject) => {
    operation.onsuccess = () => resolve(operation.result);
    operation.onerror = () => reject(operation.error);
  });
}

async function database() {
  const opening = indexedDB.open(DB, 1);
  opening.onupgradeneeded = () => opening.result.createObjectStore(STORE);
  return request(opening);
}

const hexOf = (buffer) => [...new Uint8Array(buffer)]
  .map((b) => b.toString(16).padStart(2, "0")).join("");

/** The install's key pair, made (and stored) on first use. */
export async function deviceKeyPair() {
  const db = await database();
  try {
    const held = await request(db.transaction(STORE).objectStore(STORE).get(NAME));
    if (held?.privateKey && held?.publicKey) return held;
    const pair = await crypto.subtle.generateKey(ALGORITHM, false, ["sign", "verify"]);
    await request(db.transaction(STORE, "readwrite").objectStore(STORE).put(pair, NAME));
    return pair;
  } finally {
    db.close();
  }
}

/** The public key, uncompressed point, hex (130 characters). */
export async function devicePublicKey() {
  const { publicKey } = await deviceKeyPair();
  return hexOf(await crypto.subtle.exportKey("raw", publicKey));
}

/** The proof a session request carries: ts and an ECDSA signature (r||s, hex). */
export async function sessionProof(deviceId) {
  const { privateKey } = await deviceKeyPair();
  const ts = Math.floor(Date.now() / 1000);
  const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, privateKey,
    new TextEncoder().encode(`esafety-session-v1\n${deviceId}\n${ts}`));
  return { ts, sig: hexOf(sig) };
}
