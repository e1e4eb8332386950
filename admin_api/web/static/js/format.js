// Showing times, durations and names the way people in a UK centre read them.

const DATE_TIME = new Intl.DateTimeFormat("en-GB", { dateStyle: "medium", timeStyle: "short" });
const DATE = new Intl.DateTimeFormat("en-GB", { weekday: "short", day: "numeric", month: "short" });
const DAY = new Intl.DateTimeFormat("en-GB", { day: "numeric", month: "short", year: "numeric" });

export const ROLE_LABELS = {
  learner: "Learner",
  staff: "Staff",
  it_support: "IT support",
  manager: "Manager",
  dsl: "Designated safeguarding lead",
  admin: "Administrator",
};

export function roleLabel(role) {
  return ROLE_LABELS[role] || role;
}

/** An epoch time in seconds as "21 Nov 2026, 14:05". */
export function formatTime(seconds) {
  if (seconds === null || seconds === undefined || seconds === "") return "–";
  return DATE_TIME.format(new Date(Number(seconds) * 1000));
}

/** An ISO date (2026-11-21) as "Sat 21 Nov". */
export function formatShortDate(isoDate) {
  return DATE.format(new Date(`${isoDate}T12:00:00`));
}

export function formatDay(isoDate) {
  return DAY.format(new Date(`${isoDate}T12:00:00`));
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 3600) return `${Math.max(1, Math.round(seconds / 60))} min`;
  if (seconds < 2 * 86400) return `${(seconds / 3600).toFixed(1)} hours`;
  return `${(seconds / 86400).toFixed(1)} days`;
}

export function formatNumber(value) {
  return new Intl.NumberFormat("en-GB").format(value);
}

/** An ISO date (2026-11-21) as the centre writes it: "21/11/2026" (empty stays empty). */
export function britishDate(isoDay) {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(isoDay || "");
  return match ? `${match[3]}/${match[2]}/${match[1]}` : "";
}

/** "21/11/2026" (or "1/2/2026") as an ISO date; null when it is not a real date. */
export function isoFromBritish(text) {
  const match = /^(\d{1,2})\/(\d{1,2})\/(\d{4})$/.exec((text || "").trim());
  if (!match) return null;
  const [day, month, year] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const date = new Date(Date.UTC(year, month - 1, day));
  if (date.getUTCFullYear() !== year || date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) return null;
  const pad = (n) => String(n).padStart(2, "0");
  return `${year}-${pad(month)}-${pad(day)}`;
}

/** A local date as YYYY-MM-DD (for the API). */
export function isoDate(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

export function daysAgo(days) {
  const date = new Date();
  date.setDate(date.getDate() - days);
  return date;
}

export function median(values) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

export function percentile(values, fraction) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))];
}
