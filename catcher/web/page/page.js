// The Catcher alarm board: follows the worker's server-sent events, sends the API's
// commands. No framework, no CDN: this file, page.css and index.html are all there is.
"use strict";

const GROUPS = [
  ["active", "Active", (a) => a.state !== "nominal" && !a.acknowledged && a.muted_severity === "NONE"],
  ["acknowledged", "Acknowledged", (a) => a.state !== "nominal" && a.acknowledged && a.muted_severity === "NONE"],
  ["muted", "Muted", (a) => a.muted_severity !== "NONE"],
  ["nominal", "Nominal", (a) => a.state === "nominal" && a.muted_severity === "NONE"],
];
const RANK = { NONE: 0, WARNING: 1, SERIOUS: 2, CRITICAL: 3 };

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

function when(iso) {
  return iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "";
}

function escapeRegex(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function say(text, ok = true) {
  const message = document.getElementById("message");
  message.textContent = text;
  message.className = ok ? "ok" : "error";
}

async function call(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch (error) { data = null; }
  if (!response.ok && response.status !== 409) {
    const detail = data && data.detail;
    const text = Array.isArray(detail)
      ? detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ")
      : detail || response.statusText;
    throw new Error(`HTTP ${response.status}: ${text}`);
  }
  return data;
}

async function command(alarm, kind, form) {
  const body = { name: `${escapeRegex(alarm.name)}$`, comment: form.comment.value };
  if (kind === "acknowledge") body.severity = alarm.max_severity;
  if (kind === "mute") {
    body.severity = form.severity.value;
    body.duration = form.duration.value;
  }
  try {
    const data = await call("POST", `alarms/${kind}`, body);
    if (data.refused && data.refused.length) {
      say(`${kind} refused for ${alarm.name}: ${data.refused[0].reason}`, false);
    } else {
      say(`${kind} sent to ${alarm.name}.`);
    }
  } catch (error) {
    say(`${kind} of ${alarm.name} failed: ${error.message}`, false);
  }
}

function renderAlarm(alarm) {
  const node = document.getElementById("alarm-template").content.firstElementChild.cloneNode(true);
  node.dataset.name = alarm.name;
  node.querySelector(".name").textContent = alarm.name;
  const sev = node.querySelector(".sev");
  sev.textContent = alarm.severity === alarm.max_severity
    ? alarm.severity : `${alarm.severity} (max ${alarm.max_severity})`;
  sev.classList.add(`sev-${alarm.max_severity}`);
  node.querySelector(".state").textContent = alarm.state;
  node.querySelector(".reason").textContent = alarm.reason;
  const who = [];
  if (alarm.acknowledged) who.push(`acknowledged by ${alarm.acknowledged_by} at ${when(alarm.acknowledged_time)}`);
  if (alarm.muted_severity !== "NONE") {
    const by = alarm.silence_id ? `(${alarm.muted_by})` : `by ${alarm.muted_by}`;
    who.push(`muted up to ${alarm.muted_severity} ${by} until ${when(alarm.unmute_at)}`);
  }
  if (alarm.escalate_to) who.push(`escalates to ${alarm.escalate_to}`);
  if (alarm.comment) who.push(`“${alarm.comment}”`);
  node.querySelector(".who").textContent = who.join("; ");
  const form = node.querySelector("form.command");
  form.setAttribute("aria-label", `Commands for ${alarm.name}`);
  for (const button of form.querySelectorAll("button[data-command]")) {
    button.setAttribute("aria-label", `${button.textContent} ${alarm.name}`);
    button.addEventListener("click", () => command(alarm, button.dataset.command, form));
  }
  const details = node.querySelector("details.history");
  if (openHistories.has(alarm.name)) {
    details.open = true;
    if (histories.has(alarm.name)) fillHistory(details, histories.get(alarm.name));
    loadHistory(alarm.name, details);
  }
  details.addEventListener("toggle", () => {
    if (details.open) {
      openHistories.add(alarm.name);
      loadHistory(alarm.name, details);
    } else {
      openHistories.delete(alarm.name);
    }
  });
  return node;
}

const openHistories = new Set();
const histories = new Map();

function fillHistory(node, history) {
  const changes = node.querySelector(".changes");
  changes.replaceChildren();
  for (const change of history.changes) {
    const what = change.command
      ? `${change.command} by ${change.user}${change.refused ? ` (refused: ${change.refused})` : ""}${change.comment ? `: “${change.comment}”` : ""}`
      : `${change.severity} (max ${change.max_severity}), ${change.state}`;
    changes.append(el("li", {}, `${when(change.time)} ${what}`));
  }
  const actions = node.querySelector(".actions");
  actions.replaceChildren();
  if (history.problem) actions.append(el("li", { class: "error" }, history.problem));
  if (!history.actions.length && !history.problem) actions.append(el("li", {}, "None."));
  for (const action of history.actions) {
    const item = el("li", {}, `${when(action.time)} ${action.action} (${action.type}, ${action.severity}): ${action.state}${action.message ? ` — ${action.message}` : ""} `);
    if (action.link && /^https?:\/\//.test(action.link)) item.append(el("a", { href: action.link, rel: "noreferrer" }, "link"));
    actions.append(item);
  }
}

async function loadHistory(name, node) {
  try {
    const history = await call("GET", `history/${encodeURIComponent(name)}`);
    histories.set(name, history);
    fillHistory(node, history);
  } catch (error) { say(`The history of ${name} could not be read: ${error.message}`, false); }
}

function renderSilences(silences) {
  const body = document.querySelector("#silences tbody");
  body.replaceChildren();
  for (const silence of silences) {
    const row = el("tr");
    const tags = Object.entries(silence.tags || {}).map(([k, v]) => `${k}=${v}`).join(", ");
    for (const text of [
      [silence.name, tags].filter(Boolean).join(" "), silence.state, when(silence.starts_at),
      when(silence.expired_at || silence.ends_at), silence.created_by, silence.comment,
    ]) row.append(el("td", {}, text));
    const cell = el("td");
    if (silence.state !== "expired") {
      const expire = el("button", { type: "button", "aria-label": `Expire silence ${silence.id}` }, "Expire");
      expire.addEventListener("click", async () => {
        try {
          await call("DELETE", `silences/${encodeURIComponent(silence.id)}`);
          say(`Silence ${silence.id} expired.`);
        } catch (error) { say(error.message, false); }
      });
      cell.append(expire);
    }
    row.append(cell);
    body.append(row);
  }
}

function render(state) {
  const groups = document.getElementById("groups");
  const focused = document.activeElement && document.activeElement.closest("[data-name]");
  const keep = focused ? [focused.dataset.name, document.activeElement.name || document.activeElement.dataset.command] : null;
  groups.replaceChildren();
  for (const [key, title, test] of GROUPS) {
    const alarms = state.alarms.filter(test)
      .sort((a, b) => RANK[b.max_severity] - RANK[a.max_severity] || a.name.localeCompare(b.name));
    const section = el("section", { class: `group group-${key}`, "aria-label": title });
    section.append(el("h3", {}, `${title} (${alarms.length})`));
    for (const alarm of alarms) section.append(renderAlarm(alarm));
    groups.append(section);
  }
  renderSilences(state.silences);
  if (keep) {  // keep the keyboard where it was across a live update
    const article = [...groups.querySelectorAll("[data-name]")].find((n) => n.dataset.name === keep[0]);
    const target = article && (article.querySelector(`[name="${keep[1]}"]`) || article.querySelector(`[data-command="${keep[1]}"]`));
    if (target) target.focus();
  }
}

function connect() {
  const status = document.getElementById("connection");
  const source = new EventSource("events");
  source.addEventListener("state", (event) => {
    const state = JSON.parse(event.data);
    status.textContent = `Live, as ${state.user}. ${state.alarms.length} alarm(s).`;
    render(state);
  });
  source.onerror = () => { status.textContent = "Reconnecting…"; };
}

document.getElementById("silence-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const body = { name: form.name.value, comment: form.comment.value };
  if (form.starts_at.value) body.starts_at = new Date(form.starts_at.value).toISOString();
  if (form.ends_at.value) body.ends_at = new Date(form.ends_at.value).toISOString();
  if (form.duration.value) body.duration = form.duration.value;
  try {
    const silence = await call("POST", "silences", body);
    say(`Silence ${silence.id} created, ${silence.state} until ${when(silence.ends_at)}.`);
    form.reset();
  } catch (error) { say(`The silence was not created: ${error.message}`, false); }
});

connect();
