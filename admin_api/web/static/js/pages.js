// Every page of the UI: its path, title, who may use it, and the module that draws it.
// The roles follow admin_api/roles.py; the API refuses anyone else anyway.

const IT = ["it_support", "admin"];
const OVERSIGHT = ["manager", "dsl", "admin"];
const EVERYONE = ["learner", "staff", "it_support", "manager", "dsl", "admin"];
const SESSION_OPENERS = ["staff", "it_support", "manager", "dsl", "admin"];

export const PAGES = [
  { path: "/sign-in", title: "Sign in", roles: null, load: () => import("./pages/sign_in.js") },
  { path: "/setup", title: "Set up esafety", roles: null, load: () => import("./pages/setup.js") },
  { path: "/my-requests", title: "My requests and reports", nav: "My requests", roles: ["learner", "staff"],
    load: () => import("./pages/my_requests.js") },
  { path: "/report", title: "I reached this by accident", roles: EVERYONE, load: () => import("./pages/accident_report.js") },
  { path: "/request-review", title: "Ask for a site to be reviewed", roles: EVERYONE,
    load: () => import("./pages/review_request.js") },
  { path: "/unblock-requests", title: "Unblock requests", nav: "Unblock requests", roles: IT,
    load: () => import("./pages/unblock_queue.js") },
  { path: "/unblock-requests/:id", title: "Unblock request", roles: IT, load: () => import("./pages/unblock_detail.js") },
  { path: "/overrides", title: "Overrides", nav: "Overrides", roles: IT, load: () => import("./pages/overrides.js") },
  { path: "/categories", title: "Categories and lists", nav: "Categories", roles: IT, load: () => import("./pages/categories.js") },
  { path: "/check", title: "Test a URL", nav: "Test a URL", roles: IT, load: () => import("./pages/url_check.js") },
  { path: "/dashboard", title: "Dashboard", nav: "Dashboard", roles: OVERSIGHT, load: () => import("./pages/dashboard.js") },
  { path: "/access-log", title: "Access log", nav: "Access log", roles: OVERSIGHT, load: () => import("./pages/access_log.js") },
  { path: "/quarterly", title: "Quarterly report", nav: "Quarterly report", roles: OVERSIGHT,
    load: () => import("./pages/quarterly.js") },
  { path: "/alerts", title: "Safeguarding alerts", nav: "Alerts", roles: OVERSIGHT, load: () => import("./pages/alerts.js") },
  { path: "/alerts/:id", title: "Safeguarding alert", roles: OVERSIGHT, load: () => import("./pages/alert_detail.js") },
  { path: "/class-sessions", title: "Class sessions", nav: "My sessions", roles: SESSION_OPENERS,
    load: () => import("./pages/class_sessions.js") },
  { path: "/users", title: "Users and roles", nav: "Users", roles: ["admin"], load: () => import("./pages/users.js") },
  { path: "/audit", title: "Audit log", nav: "Audit log", roles: ["manager", "admin"], load: () => import("./pages/audit_log.js") },
];

/** Where each role starts after signing in. */
const HOME = { learner: "/my-requests", staff: "/my-requests", it_support: "/unblock-requests",
  manager: "/dashboard", dsl: "/alerts", admin: "/dashboard" };

export function homeFor(role) {
  return HOME[role] || "/sign-in";
}

/** The page for a path, with its :id parameter; null when there is none. */
export function findPage(pathname) {
  for (const page of PAGES) {
    const pattern = new RegExp(`^${page.path.replace(":id", "([0-9]{1,18})")}/?$`);
    const match = pattern.exec(pathname);
    if (match) return { page, id: match[1] || null };
  }
  return null;
}

export function mayUse(page, user) {
  return page.roles === null || (user !== null && page.roles.includes(user.role));
}

export function navigationFor(user) {
  return user ? PAGES.filter((page) => page.nav && mayUse(page, user)) : [];
}
