// The call's transcript: what the customer said outside card capture, for a tenant that
// transcribes its calls. Voice has already replaced card data with labels ("[card number:
// 16 digits]") and notifications masks it once more; still, it is what a customer said,
// so it goes in as text only, never as HTML.
//
// Loaded when the desk shows a call (`GET /api/v1/calls/{id}/transcript`; 404: the call is
// not transcribed, and the panel stays hidden without a word), then grown by pushed
// `voice.transcript` events with `source: "call"`. Utterances are kept by their `seq`: one
// the load and a push both bring, or one a reconnect replays, is shown once, and the list
// stays in `seq` order whatever order they come in, the newest at the bottom.

import { $, el, show, when } from "./dom.js";
import { friendly } from "./text.js";

// Within this many pixels of the end the list follows new utterances; an agent who
// scrolled up to read an earlier one is left where they are.
const FOLLOW_SLACK_PX = 24;

export class Transcript {
  constructor(desk) {
    this.desk = desk;
    this.callId = null;
    this.lines = new Map(); // seq -> its <li>
    this.loaded = false; // the stored transcript of this call has been read once
    this.loading = null;
    this.stale = false; // a load was asked for while one was on its way
    this.following = true;
    const list = $("transcript-lines");
    list.addEventListener("scroll", () => {
      this.following = list.scrollHeight - list.scrollTop - list.clientHeight <= FOLLOW_SLACK_PX;
    });
  }

  // The desk shows another call, or none: start again with that call's transcript.
  open(callId) {
    if ((callId ?? null) === this.callId) return;
    this.callId = callId ?? null;
    this.lines = new Map();
    this.loaded = false;
    this.stale = false;
    this.following = true;
    $("transcript-lines").replaceChildren();
    this.render();
    if (this.callId) this.load();
  }

  // Read the stored transcript and merge it in (after a reconnect's `reset` too: what was
  // missed while away fills in, what is on screen stays once).
  async load() {
    if (this.loading) {
      this.stale = true;
      return this.loading;
    }
    this.loading = this.fetch().finally(() => {
      this.loading = null;
    });
    await this.loading;
    if (this.stale) {
      this.stale = false;
      await this.load();
    }
  }

  async fetch() {
    const callId = this.callId;
    if (!callId) return;
    let answer;
    try {
      answer = await this.desk.ctx.api.get(`/api/v1/calls/${encodeURIComponent(callId)}/transcript`);
    } catch (problem) {
      // 404: not transcribed (or voice has not yet heard that the call is this agent's;
      // its first pushed utterance brings the panel and loads again).
      if (callId === this.callId && problem.status !== 404) this.desk.ctx.error(friendly(problem));
      return;
    }
    if (callId !== this.callId) return; // the desk moved on to another call meanwhile
    this.loaded = true;
    for (const utterance of answer.utterances ?? []) this.add(utterance);
    this.render();
  }

  // A pushed `voice.transcript` of the call transcription (`source: "call"`).
  pushed(data) {
    if (!this.callId || data.call_id !== this.callId || !Number.isInteger(data.seq)) return;
    // The push carries no time of its own: it is shown as heard now, and the stored time
    // replaces it when the transcript is next loaded.
    this.add({ seq: data.seq, at: new Date().toISOString(), text: data.text });
    this.render();
    // Utterances this page has not seen (said before the first load answered, or while a
    // 404 said voice did not know the call was ours yet): the stored transcript has them.
    const highest = Math.max(...this.lines.keys());
    if (!this.loaded || this.lines.size < highest) this.load();
  }

  add(utterance) {
    const shown = this.lines.get(utterance.seq);
    if (shown) {
      const time = shown.querySelector("time");
      time.dateTime = utterance.at ?? "";
      time.textContent = when(utterance.at);
      return;
    }
    const item = el(
      "li",
      { "data-seq": utterance.seq },
      el("time", { datetime: utterance.at }, when(utterance.at)),
      " ",
      el("span", { class: "said" }, utterance.text ?? ""),
    );
    const later = [...this.lines.keys()].filter((seq) => seq > utterance.seq);
    const before = later.length ? this.lines.get(Math.min(...later)) : null;
    $("transcript-lines").insertBefore(item, before);
    this.lines.set(utterance.seq, item);
  }

  render() {
    const visible = Boolean(this.callId) && (this.loaded || this.lines.size > 0);
    show("transcript", visible);
    show("transcript-empty", this.lines.size === 0);
    const list = $("transcript-lines");
    show(list, this.lines.size > 0);
    if (visible && this.following) list.scrollTop = list.scrollHeight;
  }
}
