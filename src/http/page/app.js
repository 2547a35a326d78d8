// mediaweave's page: list pipelines, watch one over WebRTC (WHEP), show getStats
// figures, chat with the other viewers over a data channel. No build step, no dependencies.
"use strict";

const $ = (sel) => document.querySelector(sel);

// The token helpers (api, withToken, reasonOf, showAuthNotice, authProblem, token) come from
// token.js; a new token reloads the lists.
onTokenChange(() => {
  refresh();
  refreshRecordings();
});

// Exposed for people poking in the console and for the browser tests.
window.mediaweave = { stats: {}, chat: [], events: [], watching: null, channelOpen: false, token: () => token };

let pc = null, channel = null, statsTimer = null, last = null;

function showError(text) {
  const el = $("#error");
  el.textContent = text;
  el.hidden = !text;
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

// ---- Pipeline list: one entry per pipeline, kept across polls and updated in place, so
// open graphs, chart history and buttons survive the once-a-second refresh.

const POLL_MS = 1000;
const HISTORY = 60; // chart samples kept (one per poll)
const CHART_W = 160, CHART_H = 40;
const SVG_NS = "http://www.w3.org/2000/svg";
const entries = new Map(); // pipeline name → entry (see makeEntry)
window.mediaweave.history = {}; // name → { bitrate, fps, viewers } arrays, for the console/tests

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function svgEl(tag, attrs = {}) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

// Avoids needless DOM writes (and losing a text selection) when nothing changed.
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

// A full-width row under the pipeline's row: its error, its reload warning, its details.
function wideRow(cls) {
  const row = el("tr", cls);
  const td = row.insertCell();
  td.colSpan = 6;
  td.className = cls;
  return { row, td };
}

function makeEntry(name) {
  const row = el("tr", "pipeline");
  row.dataset.pipeline = name;
  const cells = {};
  for (const k of ["name", "state", "source", "outputs", "viewers", "action"]) cells[k] = row.insertCell();
  cells.name.textContent = name;
  const err = wideRow("error");
  const warn = wideRow("warning");
  const detail = wideRow("detail");
  detail.row.dataset.detailOf = name;
  const charts = {
    bitrate: makeChart("bitrate", "bitrate", 1, (v) => `${v.toFixed(0)} kbit/s`),
    fps: makeChart("fps", "fps", 1, (v) => v.toFixed(v < 10 ? 1 : 0)),
    viewers: makeChart("viewers", "viewers", 1, (v) => v.toFixed(0)),
  };
  const graph = makeGraph(name);
  const strip = el("div", "pipeline-detail");
  strip.append(charts.bitrate.fig, charts.fps.fig, charts.viewers.fig, graph.details);
  detail.td.append(strip);
  const hist = { bitrate: [], fps: [], viewers: [] };
  window.mediaweave.history[name] = hist;
  return { name, row, cells, err, warn, detail, charts, graph, hist, prev: null, state: null };
}

function dropEntry(e) {
  if (e.graph.blobUrl) URL.revokeObjectURL(e.graph.blobUrl);
  e.graph.seq++; // a graph load still under way is ignored
  delete window.mediaweave.history[e.name];
  entries.delete(e.name);
}

function updateEntry(e, p, now) {
  const c = e.cells;
  setText(c.state, p.state);
  c.state.className = "state-" + p.state;
  setText(c.source, p.source || "");
  setText(c.outputs, (p.outputs || []).join(", "));
  setText(c.viewers, String((p.viewers || []).length));

  // "watch" only for a playing pipeline with a webrtc output; kept (not recreated) while valid.
  // A pipeline that relays what is published to it has nothing to show while nobody
  // publishes: it says it is waiting instead.
  const webrtc = (p.outputs || []).some((o) => o.startsWith("webrtc"));
  const relay = (p.source || "").startsWith("webrtc publisher");
  const waiting = webrtc && p.state === "playing" && relay && !(p.publishers || []).length;
  // A room is joined on its own page, which shows everybody in it.
  const room = Array.isArray(p.participants);
  let j = c.action.querySelector("a[data-room]");
  if (room && p.state === "playing") {
    if (!j) {
      j = el("a", null, "");
      j.dataset.room = p.name;
      j.href = `/room/${encodeURIComponent(p.name)}`;
      c.action.append(j);
    }
    const n = p.participants.length;
    setText(j, `join the room (${n} ${n === 1 ? "participant" : "participants"})`);
  } else if (j) {
    j.remove();
  }
  let b = c.action.querySelector("button[data-watch]");
  if (webrtc && p.state === "playing" && !waiting && !room) {
    if (!b) {
      b = el("button", null, "watch");
      b.dataset.watch = p.name;
      b.onclick = () => watch(p.name);
      c.action.append(b);
    }
  } else if (b) {
    b.remove();
  }
  // "HLS": the playlist, for players without WebRTC (Safari and phones play it in the tab;
  // VLC, ffplay and hls.js take the link). Players cannot set headers: the token goes along.
  const hls = (p.outputs || []).some((o) => o.startsWith("hls")) && p.state === "playing";
  let h = c.action.querySelector("a[data-hls]");
  if (hls) {
    const href = `/hls/${encodeURIComponent(p.name)}/index.m3u8` +
      (token ? `?token=${encodeURIComponent(token)}` : "");
    if (!h) {
      h = el("a", "hls", "HLS");
      h.dataset.hls = p.name;
      h.target = "_blank";
      h.title = "the HLS playlist: plays in Safari and phones' browsers; copy it into VLC or ffplay";
      c.action.append(h);
    }
    if (h.getAttribute("href") !== href) h.href = href;
  } else if (h) {
    h.remove();
  }
  let w = c.action.querySelector("span[data-waiting]");
  if (waiting && !w) {
    w = el("span", "waiting", "waiting for a publisher");
    w.dataset.waiting = p.name;
    c.action.append(w);
  } else if (!waiting && w) {
    w.remove();
  }

  setText(e.err.td, p.error || "");
  setText(e.warn.td, p.reload_error ? `⚠ the file's latest edit was not applied: ${p.reload_error}` : "");

  sample(e, p, now);
  for (const k of ["bitrate", "fps", "viewers"]) drawChart(e.charts[k], e.hist[k]);

  // An open graph follows the pipeline: reload it when the state changes (new run, or stopped).
  if (e.state !== null && e.state !== p.state && e.graph.details.open) loadGraph(e.graph);
  e.state = p.state;
}

// One chart sample per poll. The meter's counters are cumulative: rates are the difference
// from the previous poll over the elapsed time; a counter that went down (reset) counts as 0.
function sample(e, p, now) {
  const m = p.meter;
  let kbps = null, fps = null; // null: unknown, drawn as a gap
  if (m && e.prev && now > e.prev.t) {
    const dt = (now - e.prev.t) / 1000;
    const bytes = m.video_bytes - e.prev.bytes, frames = m.video_frames - e.prev.frames;
    kbps = bytes < 0 ? 0 : (bytes * 8) / dt / 1000;
    fps = frames < 0 ? 0 : frames / dt;
  }
  e.prev = m ? { bytes: m.video_bytes, frames: m.video_frames, t: now } : null;
  push(e.hist.bitrate, kbps);
  push(e.hist.fps, fps);
  push(e.hist.viewers, (p.viewers || []).length);
}

function push(list, v) {
  list.push(v);
  if (list.length > HISTORY) list.shift();
}

// A labelled sparkline: caption (label, current value) over an inline SVG.
function makeChart(kind, label, floor, format) {
  const fig = el("figure", "chart chart-" + kind);
  const value = el("span", "value", "–");
  const cap = el("figcaption");
  cap.append(el("span", "label", label), value);
  const svg = svgEl("svg", { width: CHART_W, height: CHART_H, viewBox: `0 0 ${CHART_W} ${CHART_H}`, preserveAspectRatio: "none" });
  const title = svgEl("title");
  const area = svgEl("path", { class: "area" });
  const line = svgEl("path", { class: "line" });
  svg.append(title, area, line);
  fig.append(cap, svg);
  return { fig, value, title, area, line, floor, format };
}

// Draws the history right-aligned (newest at the right edge), scaled from 0 to its maximum
// (at least c.floor, so a flat zero stays at the bottom); null values break the line.
function drawChart(c, values) {
  const known = values.filter((v) => v !== null);
  const current = values.length ? values[values.length - 1] : null;
  setText(c.value, current === null ? "–" : c.format(current));
  const max = Math.max(c.floor, ...known);
  const step = CHART_W / (HISTORY - 1), offset = HISTORY - values.length;
  const y = (v) => (CHART_H - 1 - (v / max) * (CHART_H - 2)).toFixed(1);
  let line = "", area = "", seg = [];
  const flush = () => {
    if (seg.length) {
      const pts = seg.length === 1 ? [seg[0], seg[0]] : seg; // a lone sample shows as a dot
      line += "M" + pts.map(([x, yy]) => `${x} ${yy}`).join("L");
      area += `M${pts[0][0]} ${CHART_H}L` + pts.map(([x, yy]) => `${x} ${yy}`).join("L") + `L${pts[pts.length - 1][0]} ${CHART_H}Z`;
    }
    seg = [];
  };
  values.forEach((v, i) => {
    if (v === null) flush();
    else seg.push([((offset + i) * step).toFixed(1), y(v)]);
  });
  flush();
  c.line.setAttribute("d", line);
  c.area.setAttribute("d", area);
  c.title.textContent = `last ${values.length} s, scale 0 – ${c.format(max)}`;
}

// The pipeline's live graph, behind a <details>: loaded when opened and on "refresh".
function graphUrl(name) {
  return `/api/pipelines/${encodeURIComponent(name)}/graph.svg?t=${Date.now()}`;
}

function makeGraph(name) {
  const details = el("details", "graph");
  details.append(el("summary", null, "graph"));
  const bar = el("div", "graph-bar");
  const reload = el("a", null, "refresh");
  reload.href = "#";
  const size = el("a", null, "actual size");
  size.href = "#";
  const open = el("a", null, "open in new tab");
  open.target = "_blank";
  open.rel = "noopener";
  const status = el("span", "graph-status");
  size.hidden = open.hidden = true; // until a graph is shown
  bar.append(reload, size, open, status);
  const box = el("div", "graph-box");
  box.hidden = true;
  const link = el("a"); // clicking the graph opens the SVG in a new tab (browser zoom, scroll)
  link.target = "_blank";
  link.rel = "noopener";
  link.title = "open in a new tab";
  const img = el("img");
  img.alt = `graph of pipeline ${name}`;
  link.append(img);
  box.append(link);
  details.append(bar, box);
  const g = { name, details, box, img, link, size, open, status, blobUrl: null, seq: 0 };
  details.addEventListener("toggle", () => { if (details.open) loadGraph(g); });
  reload.onclick = (ev) => { ev.preventDefault(); loadGraph(g); };
  size.onclick = (ev) => {
    ev.preventDefault();
    const actual = box.classList.toggle("actual");
    size.textContent = actual ? "fit width" : "actual size";
  };
  return g;
}

// Fetches rather than pointing the <img> at the URL, so a failure's JSON error can be shown
// (409: not running, 503: graphviz missing).
async function loadGraph(g) {
  const seq = ++g.seq; // only the latest load updates the view
  const src = graphUrl(g.name);
  g.status.className = "graph-status";
  setText(g.status, "loading…");
  try {
    const res = await api(src);
    if (!res.ok) throw new Error(await reasonOf(res));
    const blob = await res.blob();
    if (seq !== g.seq) return;
    if (g.blobUrl) URL.revokeObjectURL(g.blobUrl);
    g.blobUrl = URL.createObjectURL(blob);
    g.img.src = g.blobUrl;
    g.link.href = g.open.href = withToken(src); // a new tab cannot send the header
    g.box.hidden = g.size.hidden = g.open.hidden = false;
    setText(g.status, `as of ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    if (seq !== g.seq) return;
    g.box.hidden = g.size.hidden = g.open.hidden = true; // a stale graph would mislead
    g.status.className = "graph-status error";
    setText(g.status, e.message || String(e));
  }
}

// Puts the rows in `wanted` order under `parent`, moving only what is out of place (moving
// keeps an open <details> and a loaded <img>), and removes any other row.
function placeRows(parent, wanted) {
  let at = parent.firstChild;
  for (const node of wanted) {
    if (node === at) at = at.nextSibling;
    else parent.insertBefore(node, at);
  }
  while (at) {
    const next = at.nextSibling;
    at.remove();
    at = next;
  }
}

let polling = false;

async function refresh() {
  if (polling) return; // the previous poll is still waiting for the service
  polling = true;
  try {
    const asked = token;
    const res = await api("/api/pipelines");
    if (asked !== token) return; // the token changed meanwhile: the next poll asks again
    if (res.status === 401 || res.status === 403) {
      const problem = authProblem(res.status, await reasonOf(res));
      if (asked !== token) return;
      showAuthNotice(problem, res.status === 401);
      for (const e of [...entries.values()]) dropEntry(e); // nothing may be shown
      placeRows($("#pipeline-rows"), []);
      $("#service-status").textContent = res.status === 401 ? "token needed" : "not allowed";
      return;
    }
    if (!res.ok) {
      $("#service-status").textContent = `service error: ${await reasonOf(res)}`;
      return;
    }
    const list = await res.json();
    const now = performance.now();
    const wanted = [], seen = new Set();
    for (const p of list) {
      let e = entries.get(p.name);
      if (!e) entries.set(p.name, (e = makeEntry(p.name)));
      seen.add(p.name);
      updateEntry(e, p, now);
      wanted.push(e.row);
      if (p.error) wanted.push(e.err.row);
      if (p.reload_error) wanted.push(e.warn.row);
      wanted.push(e.detail.row);
    }
    for (const e of [...entries.values()]) if (!seen.has(e.name)) dropEntry(e);
    placeRows($("#pipeline-rows"), wanted);
    $("#service-status").textContent = `${list.length} pipelines`;
  } catch (e) {
    $("#service-status").textContent = "service unreachable";
  } finally {
    polling = false;
  }
}

function waitForIce(peer) {
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (peer.iceGatheringState === "complete") {
        peer.removeEventListener("icegatheringstatechange", done);
        resolve();
      }
    };
    peer.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000); // answer with what we have rather than never
  });
}

let resource = null; // the WHEP session to DELETE when we stop

function stop() {
  clearInterval(statsTimer);
  statsTimer = null;
  if (pc) pc.close();
  if (resource) api(resource, { method: "DELETE" }).catch(() => {});
  pc = channel = resource = null;
  last = null;
  window.mediaweave.watching = null;
  window.mediaweave.channelOpen = false;
  $("#player").hidden = true;
}

// Watches over WHEP: our offer (with every candidate) in, the answer back, DELETE on stop.
async function watch(name) {
  stop();
  showError("");
  window.mediaweave.stats = {};
  $("#watching").textContent = name;
  $("#player").hidden = false;
  $("#chat-log").replaceChildren();
  const peer = new RTCPeerConnection();
  pc = peer;
  const current = () => pc === peer; // false once stop() or another watch() took over
  try {
    peer.addTransceiver("video", { direction: "recvonly" });
    peer.addTransceiver("audio", { direction: "recvonly" });
    const media = new MediaStream();
    peer.ontrack = (e) => {
      media.addTrack(e.track);
      $("#video").srcObject = media;
    };
    const dc = peer.createDataChannel("chat");
    channel = dc;
    dc.onopen = () => { if (current()) window.mediaweave.channelOpen = true; };
    dc.onmessage = (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch { msg = { from: "?", text: String(e.data) }; }
      if (msg && msg.event) {
        // A hook event of the pipeline (webrtc output with hook_events = true).
        const f = msg.event.fields || {};
        window.mediaweave.events.push(msg.event);
        addChat({ from: `⚑ ${f.hook ?? "hook"}`, text: `${f.kind ?? ""} ${JSON.stringify(f.fields ?? {})}` }, false);
      } else {
        addChat(msg);
      }
    };
    await peer.setLocalDescription(await peer.createOffer());
    await waitForIce(peer);
    if (!current()) return;
    const res = await api("/whep/" + encodeURIComponent(name), {
      method: "POST",
      headers: { "Content-Type": "application/sdp" },
      body: peer.localDescription.sdp,
    });
    if (!res.ok) throw new Error(await reasonOf(res));
    const answer = await res.text();
    const location = res.headers.get("Location");
    if (!current()) {
      if (location) api(location, { method: "DELETE" }).catch(() => {});
      return;
    }
    resource = location;
    await peer.setRemoteDescription({ type: "answer", sdp: answer });
    window.mediaweave.watching = name;
    statsTimer = setInterval(updateStats, 1000);
  } catch (e) {
    if (current()) {
      showError(`cannot watch ${name}: ${e.message || e}`);
      stop();
    }
  }
}

async function updateStats() {
  if (!pc) return;
  let report;
  try { report = await pc.getStats(); } catch { return; }
  const s = {};
  report.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") {
      s.framesDecoded = r.framesDecoded || 0;
      s.frameWidth = r.frameWidth || 0;
      s.frameHeight = r.frameHeight || 0;
      s.framesPerSecond = r.framesPerSecond || 0;
      s.bytesReceived = r.bytesReceived || 0;
      s.packetsLost = r.packetsLost || 0;
      // Whether frames arrive whole and whether the decoder asked for a keyframe.
      s.framesReceived = r.framesReceived || 0;
      s.framesDropped = r.framesDropped || 0;
      s.keyFramesDecoded = r.keyFramesDecoded || 0;
      s.pliCount = r.pliCount || 0;
      s.nackCount = r.nackCount || 0;
      s.freezeCount = r.freezeCount || 0;
      s.totalFreezesDuration = r.totalFreezesDuration || 0;
      s.timestamp = r.timestamp;
    }
    if (r.type === "candidate-pair" && r.state === "succeeded" && r.currentRoundTripTime !== undefined) {
      s.roundTripTimeMs = r.currentRoundTripTime * 1000;
    }
  });
  if (last && s.timestamp > last.timestamp) {
    s.bitrateKbps = ((s.bytesReceived - last.bytesReceived) * 8) / (s.timestamp - last.timestamp);
  }
  // What the service says of this viewer: its ladder rung and bandwidth estimate.
  const mine = await myViewer();
  if (mine) {
    s.rung = mine.rung;
    s.estimateKbps = mine.estimate_kbps;
    s.switches = mine.switches;
  }
  last = s;
  window.mediaweave.stats = s;
  $("#stat-resolution").textContent = s.frameWidth ? `${s.frameWidth}×${s.frameHeight}` : "–";
  $("#stat-fps").textContent = s.framesPerSecond ? s.framesPerSecond.toFixed(0) : "–";
  $("#stat-bitrate").textContent = s.bitrateKbps ? `${s.bitrateKbps.toFixed(0)} kbit/s` : "–";
  $("#stat-frames").textContent = s.framesDecoded ?? "–";
  $("#stat-lost").textContent = s.packetsLost ?? "–";
  $("#stat-rtt").textContent = s.roundTripTimeMs !== undefined ? `${s.roundTripTimeMs.toFixed(1)} ms` : "–";
  $("#stat-rung").textContent = s.rung ? `${s.rung} (${s.switches} switches)` : "–";
  $("#stat-estimate").textContent = s.estimateKbps ? `${s.estimateKbps} kbit/s` : "–";
}

// This page's own viewer entry in the pipeline's status (found by the WHEP resource's id).
async function myViewer() {
  const name = window.mediaweave.watching;
  const id = resource ? resource.split("/").pop() : null;
  if (!name || !id) return null;
  try {
    const res = await api("/api/pipelines/" + encodeURIComponent(name));
    if (!res.ok) return null;
    const st = await res.json();
    return (st.viewers || []).find((v) => id.startsWith(v.id)) || null;
  } catch {
    return null;
  }
}

function addChat(msg, isChat = true) {
  if (isChat) window.mediaweave.chat.push(msg);
  const li = document.createElement("li");
  const from = document.createElement("span");
  from.className = "from";
  from.textContent = msg.from;
  li.append(from, document.createTextNode(msg.text));
  $("#chat-log").append(li);
  li.scrollIntoView({ block: "nearest" });
}

$("#chat-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("#chat-input");
  const text = input.value.trim();
  if (!text || !channel || channel.readyState !== "open") return;
  channel.send(text);
  addChat({ from: "me", text });
  input.value = "";
});
$("#stop").addEventListener("click", stop);

function formatBytes(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(2) + " GB";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + " MB";
  return Math.round(n / 1e3) + " kB";
}

async function refreshRecordings() {
  const rows = $("#recording-rows");
  let list;
  try {
    const res = await api("/api/recordings");
    if (res.status === 401 || res.status === 403) {
      rows.replaceChildren(); // the pipeline list's notice says why
      return;
    }
    if (!res.ok) return;
    list = await res.json();
  } catch { return; }
  rows.replaceChildren();
  for (const r of list.slice().reverse()) { // newest first
    const row = rows.insertRow();
    // A room participant's recordings are one level deeper: `room/participant`.
    const dir = r.pipeline.split("/").map(encodeURIComponent).join("/");
    const url = `/recordings/${dir}/${encodeURIComponent(r.file)}`;
    cell(row, r.pipeline);
    cell(row, (r.started || r.file).replace("T", " ").replace(/\.\d+Z$/, ""));
    if (r.recording) cell(row, "● recording", "live");
    else cell(row, r.duration != null ? `${r.duration.toFixed(1)} s` : "?");
    cell(row, formatBytes(r.bytes));
    const actions = row.insertCell();
    const play = document.createElement("button");
    play.textContent = "play";
    play.dataset.play = url;
    play.onclick = () => {
      const v = $("#playback");
      v.hidden = false;
      v.src = withToken(url); // <video> cannot send the header
      v.play().catch(() => {});
    };
    actions.append(play);
    if (!r.recording) {
      const del = document.createElement("button");
      del.textContent = "delete";
      del.onclick = async () => {
        if (!confirm(`Delete ${r.pipeline}/${r.file}?`)) return;
        const res = await api(url, { method: "DELETE" });
        if (!res.ok) showError(await reasonOf(res));
        refreshRecordings();
      };
      actions.append(del);
    }
  }
}

showTokenState();
refresh();
refreshRecordings();
setInterval(refresh, POLL_MS);
setInterval(refreshRecordings, 5000);
