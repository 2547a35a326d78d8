// mediaweave's page: list pipelines, watch one over WebRTC (WHEP), show getStats
// figures, chat with the other viewers over a data channel. No build step, no dependencies.
"use strict";

const $ = (sel) => document.querySelector(sel);
// Exposed for people poking in the console and for the browser tests.
window.mediaweave = { stats: {}, chat: [], events: [], watching: null, channelOpen: false };

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

async function refresh() {
  try {
    const res = await fetch("/api/pipelines");
    const list = await res.json();
    const rows = $("#pipeline-rows");
    rows.replaceChildren();
    for (const p of list) {
      const row = rows.insertRow();
      cell(row, p.name);
      cell(row, p.state, "state-" + p.state);
      cell(row, p.source || "");
      cell(row, (p.outputs || []).join(", "));
      cell(row, String((p.viewers || []).length));
      const action = row.insertCell();
      const webrtc = (p.outputs || []).some((o) => o.startsWith("webrtc"));
      if (webrtc && p.state === "playing") {
        const b = document.createElement("button");
        b.textContent = "watch";
        b.dataset.watch = p.name;
        b.onclick = () => watch(p.name);
        action.append(b);
      }
      if (p.error) {
        const err = rows.insertRow();
        const td = cell(err, p.error, "error");
        td.colSpan = 6;
      }
    }
    $("#service-status").textContent = `${list.length} pipelines`;
  } catch (e) {
    $("#service-status").textContent = "service unreachable";
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
  if (resource) fetch(resource, { method: "DELETE" }).catch(() => {});
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
    const res = await fetch("/whep/" + encodeURIComponent(name), {
      method: "POST",
      headers: { "Content-Type": "application/sdp" },
      body: peer.localDescription.sdp,
    });
    if (!res.ok) {
      let reason = `HTTP ${res.status}`;
      try { reason = (await res.json()).error || reason; } catch { /* not JSON */ }
      throw new Error(reason);
    }
    const answer = await res.text();
    const location = res.headers.get("Location");
    if (!current()) {
      if (location) fetch(location, { method: "DELETE" }).catch(() => {});
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
      s.timestamp = r.timestamp;
    }
    if (r.type === "candidate-pair" && r.state === "succeeded" && r.currentRoundTripTime !== undefined) {
      s.roundTripTimeMs = r.currentRoundTripTime * 1000;
    }
  });
  if (last && s.timestamp > last.timestamp) {
    s.bitrateKbps = ((s.bytesReceived - last.bytesReceived) * 8) / (s.timestamp - last.timestamp);
  }
  last = s;
  window.mediaweave.stats = s;
  $("#stat-resolution").textContent = s.frameWidth ? `${s.frameWidth}×${s.frameHeight}` : "–";
  $("#stat-fps").textContent = s.framesPerSecond ? s.framesPerSecond.toFixed(0) : "–";
  $("#stat-bitrate").textContent = s.bitrateKbps ? `${s.bitrateKbps.toFixed(0)} kbit/s` : "–";
  $("#stat-frames").textContent = s.framesDecoded ?? "–";
  $("#stat-lost").textContent = s.packetsLost ?? "–";
  $("#stat-rtt").textContent = s.roundTripTimeMs !== undefined ? `${s.roundTripTimeMs.toFixed(1)} ms` : "–";
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
  let list;
  try { list = await (await fetch("/api/recordings")).json(); } catch { return; }
  const rows = $("#recording-rows");
  rows.replaceChildren();
  for (const r of list.slice().reverse()) { // newest first
    const row = rows.insertRow();
    const url = `/recordings/${encodeURIComponent(r.pipeline)}/${encodeURIComponent(r.file)}`;
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
      v.src = url;
      v.play().catch(() => {});
    };
    actions.append(play);
    if (!r.recording) {
      const del = document.createElement("button");
      del.textContent = "delete";
      del.onclick = async () => {
        if (!confirm(`Delete ${r.pipeline}/${r.file}?`)) return;
        const res = await fetch(url, { method: "DELETE" });
        if (!res.ok) showError((await res.json().catch(() => ({}))).error || `HTTP ${res.status}`);
        refreshRecordings();
      };
      actions.append(del);
    }
  }
}

refresh();
refreshRecordings();
setInterval(refresh, 2000);
setInterval(refreshRecordings, 5000);
