// Small DOM helpers. Text goes in with textContent only: nothing the server or a user
// sends is ever parsed as HTML.

export const $ = (id) => document.getElementById(id);

export function show(node, visible = true) {
  const target = typeof node === "string" ? $(node) : node;
  target.hidden = !visible;
}

export function setText(id, value) {
  $(id).textContent = value ?? "";
}

// el("li", {class: "x", "data-id": 3}, "text", childNode)
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function when(iso) {
  if (!iso) return "";
  const moment = new Date(iso);
  const today = new Date().toDateString() === moment.toDateString();
  return today
    ? moment.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : moment.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

// An id for Idempotency-Key headers. getRandomValues works on plain http too, where
// crypto.randomUUID does not (a LAN demo is not a secure context).
export function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function confirmDialog(title, text, yes = "Yes", no = "No") {
  const dialog = $("confirm-dialog");
  setText("confirm-title", title);
  setText("confirm-text", text);
  setText("confirm-yes", yes);
  setText("confirm-no", no);
  dialog.returnValue = "";
  dialog.showModal();
  $("confirm-no").focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
  });
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
