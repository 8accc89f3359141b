// The /ws/agent push channel (docs/notifications.md): events with ids, resumed after a
// disconnect from the last id processed, so nothing is lost or shown twice. On `reset`
// (the gap is too old or too long) the page refetches its state over the API.

const UNAUTHENTICATED = 4401;
const FORBIDDEN = 4403;
const POLICY = 1008;
const MAX_BACKOFF_MS = 10_000;

export class Push {
  // handlers: {event(topic, data, id), reset(), state(name, detail), signedOut(reason)}
  constructor({ scope, token, handlers }) {
    this.scope = scope;
    this.token = token; // () => access token, or null to sign in with the session cookie
    this.handlers = handlers;
    this.lastId = null;
    this.socket = null;
    this.stopped = false;
    this.attempt = 0;
    this.heartbeatMs = 20_000;
    this.watchdog = null;
    this.retry = null;
    this.onOnline = () => this.reconnectNow();
    window.addEventListener("online", this.onOnline);
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.watchdog);
    clearTimeout(this.retry);
    window.removeEventListener("online", this.onOnline);
    if (this.socket) this.socket.close(1000, "signed out");
    this.socket = null;
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = new URLSearchParams();
    if (this.scope !== "agent") query.set("scope", this.scope);
    if (this.lastId !== null) query.set("after", String(this.lastId));
    const text = query.toString();
    return `${scheme}://${location.host}/ws/agent${text ? `?${text}` : ""}`;
  }

  connect() {
    if (this.stopped) return;
    this.handlers.state(this.attempt ? "reconnecting" : "connecting");
    const socket = new WebSocket(this.url());
    this.socket = socket;
    socket.addEventListener("open", () => {
      const token = this.token();
      // In a frame there is no cookie: the token goes in the first message, never the URL.
      if (token) socket.send(JSON.stringify({ type: "auth", token }));
      this.alive();
    });
    socket.addEventListener("message", (message) => this.receive(message));
    socket.addEventListener("close", (closed) => this.closed(socket, closed));
  }

  receive(message) {
    this.alive();
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    if (data.type === "ready") {
      this.heartbeatMs = (data.heartbeat ?? 20) * 1000;
      this.attempt = 0;
      this.handlers.state("live");
      this.alive();
    } else if (data.type === "subscribed") {
      // A fresh stream (first connection, or one that never got this far): start at its
      // newest id and let the page fetch what is true now.
      if (this.lastId === null) {
        this.lastId = data.last_id;
        this.handlers.reset();
      }
    } else if (data.type === "event") {
      if (this.lastId !== null && data.id <= this.lastId) return; // seen already
      this.lastId = data.id;
      this.handlers.event(data.topic, data.data ?? {}, data.id);
    } else if (data.type === "reset") {
      this.lastId = data.last_id;
      this.handlers.reset();
    } else if (data.type === "error") {
      console.warn("push:", data.code, data.message);
    }
  }

  // Two heartbeats without a word: the connection is dead even if the socket says not.
  alive() {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => this.reconnectNow(), this.heartbeatMs * 2 + 5000);
  }

  reconnectNow() {
    if (this.stopped) return;
    clearTimeout(this.retry);
    if (this.socket && this.socket.readyState <= WebSocket.OPEN) {
      this.socket.close(4000, "reconnecting");
    } else {
      this.connect();
    }
  }

  closed(socket, closed) {
    if (socket !== this.socket) return;
    clearTimeout(this.watchdog);
    this.socket = null;
    if (this.stopped) return;
    if (closed.code === UNAUTHENTICATED) {
      this.stopped = true;
      this.handlers.signedOut(closed.reason || "session_expired");
      return;
    }
    if (closed.code === FORBIDDEN || closed.code === POLICY) {
      this.stopped = true;
      this.handlers.state("refused", closed.reason);
      return;
    }
    this.attempt += 1;
    const backoff = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(this.attempt - 1, 5));
    const delay = backoff / 2 + Math.random() * (backoff / 2);
    this.handlers.state("reconnecting");
    this.retry = setTimeout(() => this.connect(), delay);
  }
}
