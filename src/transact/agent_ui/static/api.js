// The REST API from the page. Two ways to be signed in:
//
// * "cookie" (the page is the top window): the session cookie set at sign-in, with the
//   X-CSRF-Token header echoing the readable transact_csrf cookie on every change.
// * "token" (the page is inside another site's frame, a CRM): our SameSite=Strict cookies
//   are neither stored nor sent there, so the access token from the sign-in answer is
//   kept in memory only and sent as a bearer token, and refreshed while the agent works.
//
// Either way a 401 means the session ended (idle timeout, sign-out elsewhere) and the
// page goes back to the sign-in screen.

import { randomId } from "./dom.js";

const SIGNED_OUT_CODES = new Set([
  "session_expired",
  "unauthenticated",
  "token_expired",
  "invalid_token",
]);
const REFRESH_BEFORE_MS = 90_000;

export class ApiProblem extends Error {
  constructor(status, code, message, extra = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.extra = extra;
    this.retryAfter = null;
    this.requestId = null;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

export class Api {
  constructor() {
    this.mode = window.top === window.self ? "cookie" : "token";
    this.token = null;
    this.tokenExpiresAt = 0;
    this.lastActivity = Date.now();
    this.lastRefresh = Date.now();
    this.onSignedOut = () => {};
    for (const kind of ["keydown", "pointerdown"]) {
      document.addEventListener(kind, () => (this.lastActivity = Date.now()), { passive: true });
    }
    setInterval(() => this.keepTokenFresh(), 30_000);
  }

  signedIn(answer) {
    this.token = answer.access_token;
    this.tokenExpiresAt = Date.now() + answer.expires_in * 1000;
    this.lastRefresh = Date.now();
  }

  forget() {
    this.token = null;
    this.tokenExpiresAt = 0;
  }

  // The token is refreshed only when the agent has used the page since the last refresh:
  // an unattended screen must still reach the server's idle timeout.
  async keepTokenFresh() {
    if (this.mode !== "token" || !this.token) return;
    const soon = this.tokenExpiresAt - Date.now() < REFRESH_BEFORE_MS;
    if (!soon || this.lastActivity <= this.lastRefresh) return;
    this.lastRefresh = Date.now();
    try {
      this.signedIn(await this.call("POST", "/api/v1/auth/refresh", null, { refreshing: true }));
    } catch {
      // A failed refresh shows itself on the next call (401 -> sign in again).
    }
  }

  async call(method, path, body = null, options = {}) {
    if (!options.refreshing) await this.keepTokenFresh();
    const headers = { Accept: "application/json" };
    if (body !== null) headers["Content-Type"] = "application/json";
    if (options.idempotencyKey) headers["Idempotency-Key"] = options.idempotencyKey;
    if (this.mode === "token" && this.token) {
      headers.Authorization = `Bearer ${this.token}`;
    } else if (method !== "GET") {
      headers["X-CSRF-Token"] = cookie("transact_csrf");
    }
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === null ? undefined : JSON.stringify(body),
        credentials: "same-origin",
        cache: "no-store",
      });
    } catch {
      throw new ApiProblem(0, "network", "network error");
    }
    if (response.status === 204) return null;
    let answer = null;
    try {
      answer = await response.json();
    } catch {
      answer = null;
    }
    if (response.ok) return answer;
    const error = answer?.error ?? {};
    const { code = "internal_error", message = response.statusText, ...extra } = error;
    const problem = new ApiProblem(response.status, code, message, extra);
    problem.retryAfter = response.headers.get("Retry-After");
    problem.requestId = response.headers.get("X-Request-ID");
    if (response.status === 401 && SIGNED_OUT_CODES.has(code) && !options.signingIn) {
      this.onSignedOut(code);
    }
    throw problem;
  }

  get(path) {
    return this.call("GET", path);
  }

  post(path, body = {}, options = {}) {
    return this.call("POST", path, body, options);
  }

  // Money movement: one key per intent, so a retried click never pays twice.
  postOnce(path, body, key = randomId()) {
    return this.call("POST", path, body, { idempotencyKey: key });
  }
}
