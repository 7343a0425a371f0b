// The web view of runs: plain script over the versioned API, no build step.
// Everything shown comes from the API with the reader's token; text is always
// set with textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("durable-token") || "", run: null, follow: null, ui: undefined };

function readFragment() {
  // "#token=...&run=..." lets a link carry both; the token is taken out of the
  // address at once, so it is not left in the history.
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("token")) {
    state.token = params.get("token");
    sessionStorage.setItem("durable-token", state.token);
    params.delete("token");
  }
  const run = params.get("run");
  history.replaceState(null, "", params.toString() ? "#" + params.toString() : location.pathname);
  return run;
}

function notice(text) {
  $("notice").textContent = text || "";
}

async function api(path, options = {}) {
  const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    $("login").hidden = false;
    throw new Error("this server needs a token");
  }
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).detail || detail;
    } catch (_) { /* not a problem document */ }
    throw new Error(detail);
  }
  return response;
}

const ENDED = ["completed", "failed", "cancelled", "terminated", "timed_out"];
const runPath = (id) => "/v1/runs/" + encodeURIComponent(id);

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  row.appendChild(td);
  return td;
}

function when(value) {
  return value ? new Date(value).toLocaleString() : "";
}

async function loadRuns() {
  const status = $("status-filter").value;
  const query = new URLSearchParams({ limit: "100" });
  if (status) query.set("status", status);
  const page = await (await api("/v1/runs?" + query)).json();
  const body = $("runs");
  body.replaceChildren();
  for (const run of page.runs) {
    const row = document.createElement("tr");
    row.dataset.runId = run.run_id;
    row.className = "state-" + run.status + (run.run_id === state.run ? " selected" : "");
    cell(row, run.run_id);
    cell(row, run.agent);
    cell(row, run.status.replaceAll("_", " ")).className = "state";
    cell(row, when(run.created_at));
    row.addEventListener("click", () => select(run.run_id));
    body.appendChild(row);
  }
  notice("");
}

async function loadRun() {
  const id = state.run;
  if (!id) return;
  const run = await (await api(runPath(id))).json();
  if (id !== state.run) return;
  $("run").hidden = false;
  $("run-id").textContent = run.run_id;
  $("run-agent").textContent = run.agent;
  $("run-state").textContent = run.status.replaceAll("_", " ");
  $("run-error").hidden = !run.error;
  $("run-error").textContent = run.error || "";
  const link = $("run-ui");
  link.hidden = !state.ui;
  if (state.ui) link.href = state.ui + "/" + encodeURIComponent(run.run_id);
  const steps = await (await api(runPath(id) + "/steps")).json();
  const body = $("steps");
  body.replaceChildren();
  for (const step of steps) {
    const row = document.createElement("tr");
    row.className = "step-" + step.status;
    cell(row, step.step_index);
    cell(row, step.intent);
    cell(row, step.kind);
    cell(row, step.status);
    cell(row, step.attempts);
    body.appendChild(row);
  }
  await loadApprovals(run);
}

async function loadApprovals(run) {
  const all = await (await api("/v1/approvals")).json();
  const box = $("approvals");
  const pending = all.filter((a) => a.run_id === run.run_id);
  const shown = new Set([...box.children].map((el) => el.dataset.approvalId));
  if (pending.length === shown.size && pending.every((a) => shown.has(a.approval_id))) return;
  box.replaceChildren();
  for (const approval of pending) {
    const node = $("approval-template").content.firstElementChild.cloneNode(true);
    node.dataset.approvalId = approval.approval_id;
    node.querySelector(".action").textContent = approval.action;
    node.querySelector(".summary").textContent = approval.summary;
    node.querySelector(".input").textContent = JSON.stringify(approval.input, null, 2);
    node.querySelector(".approve").addEventListener("click", () => decide(node, "approve"));
    node.querySelector(".reject").addEventListener("click", () => decide(node, "reject"));
    box.appendChild(node);
  }
}

async function decide(node, decision) {
  const body = { decision, decided_by: node.querySelector(".decided-by").value || "web" };
  if (decision === "reject") {
    body.reason = node.querySelector(".reason").value;
    if (!body.reason) {
      node.querySelector(".outcome").textContent = "a rejection needs a reason";
      return;
    }
  }
  try {
    const response = await api("/v1/approvals/" + encodeURIComponent(node.dataset.approvalId), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const outcome = await response.json();
    node.querySelector(".outcome").textContent = outcome.status.replaceAll("_", " ");
    for (const button of node.querySelectorAll("button")) button.disabled = true;
  } catch (error) {
    node.querySelector(".outcome").textContent = error.message;
  }
}

function showLive(event) {
  if (event.kind === "token") {
    // A delta carries its offset in the step's text: only what is past the text
    // already shown is added, so a resumed stream never shows text twice.
    let block = document.querySelector(`#stream-text [data-step="${event.step}"]`);
    if (!block) {
      block = document.createElement("pre");
      block.dataset.step = String(event.step);
      $("stream-text").appendChild(block);
    }
    const have = block.textContent.length;
    const end = (event.offset || 0) + event.text.length;
    if (end > have) block.textContent += event.text.slice(have - (event.offset || 0));
    return;
  }
  const item = document.createElement("li");
  item.className = "live-" + event.kind;
  const words = [event.kind.replaceAll("_", " ")];
  for (const part of [event.intent, event.key, event.text, event.error]) if (part) words.push(part);
  item.textContent = words.join(" · ");
  $("stream-log").appendChild(item);
}

async function follow(id) {
  // One reader at a time: a newer selection aborts the older one.
  if (state.follow) state.follow.abort();
  const control = new AbortController();
  state.follow = control;
  $("stream-text").replaceChildren();
  $("stream-log").replaceChildren();
  let after = 0;
  while (!control.signal.aborted) {
    $("stream-state").textContent = "(following)";
    try {
      const response = await api(runPath(id) + "/stream?after=" + after, {
        signal: control.signal,
        headers: { Accept: "application/x-ndjson" },
      });
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, end).trim();
          buffer = buffer.slice(end + 1);
          if (!line) continue; // keep-alive
          const event = JSON.parse(line);
          after = event.seq;
          showLive(event);
          if (["run_completed", "run_failed", "run_cancelled"].includes(event.kind)) {
            $("stream-state").textContent = "(ended)";
            loadRun().catch((error) => notice(error.message));
            return;
          }
          if (event.kind !== "token") loadRun().catch((error) => notice(error.message));
        }
      }
      // Closed without the run's last entry: if the run ended anyway (its last entry
      // came before `after`), there is nothing more to follow.
      const run = await (await api(runPath(id))).json();
      if (ENDED.includes(run.status)) {
        $("stream-state").textContent = "(ended)";
        return;
      }
    } catch (error) {
      if (control.signal.aborted) return;
      notice("stream: " + error.message + "; reconnecting");
    }
    // The connection dropped before the run ended: resume after the last entry seen.
    $("stream-state").textContent = "(reconnecting)";
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function select(id) {
  state.run = id;
  history.replaceState(null, "", "#run=" + encodeURIComponent(id));
  for (const row of $("runs").children) row.classList.toggle("selected", row.dataset.runId === id);
  loadRun().catch((error) => notice(error.message));
  follow(id);
}

async function refresh() {
  try {
    if (state.ui === undefined) state.ui = (await (await api("/v1/server")).json()).temporal_ui;
    await loadRuns();
    if (state.run) await loadRun();
  } catch (error) {
    notice(error.message);
  }
}

async function start() {
  const run = readFragment();
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("token").value;
    sessionStorage.setItem("durable-token", state.token);
    $("login").hidden = true;
    refresh();
  });
  $("status-filter").addEventListener("change", refresh);
  await refresh();
  if (run) select(run);
  setInterval(refresh, 2000);
}

start();
