// The tenant's Agent UI settings (admins): the start menu and who may embed the UI.

import { $, el, setText } from "./dom.js";
import { METHOD_NAMES, friendly } from "./text.js";

export class SettingsView {
  constructor(ctx) {
    this.ctx = ctx;
    $("settings-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
  }

  render() {
    const settings = this.ctx.state.settings;
    $("settings-methods").replaceChildren(
      ...Object.entries(METHOD_NAMES).map(([method, name]) => {
        const input = el("input", { type: "checkbox", id: `setting-${method}`, value: method });
        input.checked = settings.methods.includes(method);
        return el("label", { for: `setting-${method}`, class: "choice" }, input, name);
      }),
    );
    $("settings-default").replaceChildren(
      ...Object.entries(METHOD_NAMES).map(([method, name]) => el("option", { value: method }, name)),
    );
    $("settings-default").value = settings.default_method;
    $("settings-currencies").value = settings.currencies.join(", ");
    $("settings-currency").value = settings.default_currency;
    $("settings-origins").value = settings.frame_origins.join("\n");
    setText("settings-message", "");
  }

  async save() {
    const body = {
      methods: Object.keys(METHOD_NAMES).filter((method) => $(`setting-${method}`).checked),
      default_method: $("settings-default").value,
      currencies: $("settings-currencies")
        .value.split(/[\s,]+/)
        .map((code) => code.trim().toUpperCase())
        .filter(Boolean),
      default_currency: $("settings-currency").value.trim().toUpperCase(),
      frame_origins: $("settings-origins")
        .value.split(/\s+/)
        .map((origin) => origin.trim())
        .filter(Boolean),
    };
    try {
      this.ctx.state.settings = await this.ctx.api.call("PUT", "/api/v1/agent-ui/settings", body);
      this.render();
      setText("settings-message", "Saved.");
    } catch (problem) {
      setText("settings-message", friendly(problem));
    }
  }
}
