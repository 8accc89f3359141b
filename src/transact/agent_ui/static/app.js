// The Agent UI's entry: screens, routes (#/calls, #/payments, #/payments/<id>, #/settings),
// the push channel and signing in and out. Plain ES modules, no build step.

import { Api } from "./api.js";
import { Desk } from "./desk.js";
import { $, setText, show } from "./dom.js";
import { Payments } from "./payments.js";
import { Push } from "./push.js";
import { ReportsView } from "./reports.js";
import { SettingsView } from "./settings.js";
import { SignIn } from "./signin.js";
import { friendly } from "./text.js";

const SCREENS = ["login", "enrol", "desk"];
const VIEWS = ["calls", "payments", "payment", "settings", "reports"];
const LIVE_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  refused: "Live updates refused",
};
const SIGNED_OUT_TEXT = {
  logout: "You have signed out.",
  default:
    "You were signed out: the session ended after a period of inactivity, or from " +
    "another window. Please sign in again.",
};

class App {
  constructor() {
    this.api = new Api();
    this.state = {
      me: null,
      settings: null,
      supervises: false,
      linksAvailable: false,
      speechAvailable: false,
      users: new Map(),
    };
    this.push = null;
    this.noticeTimer = null;
    this.api.onSignedOut = (why) => this.signedOut(why);
    this.signin = new SignIn(this);
    this.desk = new Desk(this);
    this.payments = new Payments(this);
    this.settingsView = new SettingsView(this);
    this.reports = new ReportsView(this);
    $("logout").addEventListener("click", () => this.logout());
    window.addEventListener("hashchange", () => this.route());
    document.body.dataset.mode = this.api.mode;
  }

  async boot() {
    const query = new URLSearchParams(location.search);
    if (await this.signin.tryLaunch(query)) return;
    try {
      // Cookie mode after a reload: the session may still be alive.
      const me = await this.api.call("GET", "/api/v1/auth/me", null, { signingIn: true });
      await this.enter(me);
    } catch {
      this.signin.show();
    }
  }

  // --- screens ---------------------------------------------------------------------------

  screen(name) {
    document.body.dataset.screen = name;
    for (const screen of SCREENS) show(`screen-${screen}`, screen === name);
  }

  notify(text) {
    const notice = $("notice");
    notice.textContent = text;
    show(notice);
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => show(notice, false), 8000);
  }

  error(text) {
    setText("desk-error", text);
    show("desk-error", Boolean(text));
  }

  username(id) {
    return this.state.users.get(id) ?? "another agent";
  }

  // --- signing in and out ----------------------------------------------------------------

  async signedIn(answer) {
    this.api.signedIn(answer);
    await this.enter(await this.api.get("/api/v1/auth/me"));
  }

  async enter(me) {
    this.state.me = me;
    this.state.supervises = me.role === "supervisor" || me.role === "admin";
    this.state.users = new Map([[me.id, me.username]]);
    setText("who-name", me.username);
    setText("who-role", me.role);
    for (const link of document.querySelectorAll("[data-role=admin]")) link.hidden = me.role !== "admin";
    for (const link of document.querySelectorAll("[data-role=supervisor]")) {
      link.hidden = !this.state.supervises;
    }
    this.error("");
    try {
      this.state.settings = await this.api.get("/api/v1/agent-ui/settings");
    } catch (problem) {
      this.error(friendly(problem));
      return;
    }
    this.state.linksAvailable = await this.linksAvailable();
    this.state.speechAvailable = await this.speechAvailable();
    if (this.state.supervises) await this.loadUsers();
    this.screen("desk");
    this.startPush();
    if (!location.hash) history.replaceState(null, "", "#/calls");
    await this.route();
  }

  // Pay by link is offered only where the remote service answers in this deployment.
  async linksAvailable() {
    try {
      await this.api.get("/api/v1/payment-links?limit=1");
      return true;
    } catch {
      return false;
    }
  }

  // Spoken card details are offered only where voice has a recognizer in this deployment.
  async speechAvailable() {
    try {
      return Boolean((await this.api.get("/api/v1/voice/status")).speech);
    } catch {
      return false;
    }
  }

  async loadUsers() {
    try {
      const users = await this.api.get("/api/v1/admin/users");
      for (const user of users) this.state.users.set(user.id, user.username);
    } catch {
      // Names are a nicety: ids stay unnamed.
    }
  }

  startPush() {
    this.push?.stop();
    this.push = new Push({
      scope: this.state.supervises ? "tenant" : "agent",
      token: () => (this.api.mode === "token" ? this.api.token : null),
      handlers: {
        event: (topic, data) => this.event(topic, data),
        reset: () => this.desk.refetch(),
        state: (name, detail) => this.liveState(name, detail),
        signedOut: (reason) => this.signedOut(reason),
      },
    });
    this.push.start();
  }

  liveState(name, detail) {
    const live = $("live");
    live.dataset.state = name;
    live.textContent = LIVE_TEXT[name] ?? name;
    if (name === "refused") this.error(`Live updates are unavailable: ${detail ?? ""}`);
  }

  async event(topic, data) {
    try {
      await this.desk.event(topic, data);
    } catch (problem) {
      this.error(friendly(problem));
    }
    if (topic.startsWith("payment.")) this.payments.changed(data.payment_id);
  }

  async logout() {
    // Hang up the push channel first: the server closes it (4401) as the session ends,
    // which would otherwise race this and tell the agent they timed out.
    this.push?.stop();
    this.push = null;
    try {
      await this.api.post("/api/v1/auth/logout");
    } catch {
      // Signed out here either way; the server's session times out if the call failed.
    }
    this.signedOut("logout");
  }

  signedOut(why) {
    if (!this.state.me) return;
    this.push?.stop();
    this.push = null;
    this.api.forget();
    this.state.me = null;
    this.state.settings = null;
    this.desk.reset();
    for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
    this.signin.show(SIGNED_OUT_TEXT[why] ?? SIGNED_OUT_TEXT.default);
  }

  // --- routes ----------------------------------------------------------------------------

  async route() {
    if (!this.state.me) return;
    const [, name = "calls", id] = location.hash.split("/");
    let view = name === "payments" && id ? "payment" : name;
    if (!VIEWS.includes(view) || (view === "settings" && this.state.me.role !== "admin")) view = "calls";
    if (view === "reports" && !this.state.supervises) view = "calls";
    for (const each of VIEWS) show(`view-${each}`, each === view);
    for (const link of document.querySelectorAll("[data-nav]")) {
      const here = link.dataset.nav === (view === "payment" ? "payments" : view);
      if (here) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    if (view === "calls") await this.desk.loadCalls();
    if (view === "payments") await this.payments.list();
    if (view === "payment") await this.payments.detail(decodeURIComponent(id));
    if (view === "settings") this.settingsView.render();
    if (view === "reports") await this.reports.load();
  }
}

new App().boot();
