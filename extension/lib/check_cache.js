// Brief memory of the backend's answers to "is this host blocked for me?" (off network).

export const MAX_ENTRIES = 500;

export class CheckCache {
  constructor(now = () => Date.now()) {
    this.now = now;
    this.entries = new Map();
  }

  get(host) {
    const entry = this.entries.get(host);
    if (!entry) return null;
    if (entry.expires <= this.now()) {
      this.entries.delete(host);
      return null;
    }
    return entry.answer;
  }

  put(host, answer, seconds) {
    const ttl = Math.max(1, Math.min(Number(seconds) || 60, 600)) * 1000;
    this.entries.delete(host);
    this.entries.set(host, { answer, expires: this.now() + ttl });
    while (this.entries.size > MAX_ENTRIES) {
      this.entries.delete(this.entries.keys().next().value);
    }
  }

  clear() {
    this.entries.clear();
  }
}
