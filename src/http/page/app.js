// mediaweave's page: list pipelines, watch one over WebRTC (POST /offer), show getStats
// figures, chat with the other viewers over a data channel. No build step, no dependencies.
"use strict";

const $ = (sel) => document.querySelector(sel);
// Exposed for people poking in the console and for the browser tests.
window.mediaweave = { stats: {}, chat: [], watching: null, channelOpen: false };

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

function stop() {
  clearInterval(statsTimer);
  if (pc) pc.close();
  pc = channel = null;
  last = null;
  window.mediaweave.watching = null;
  window.mediaweave.channelOpen = false;
  $("#player").hidden = true;
}

async function watch(name) {
  stop();
  showError("");
  window.mediaweave.stats = {};
  $("#watching").textContent = name;
  $("#player").hidden = false;
  $("#chat-log").replaceChildren();
  pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const media = new MediaStream();
  pc.ontrack = (e) => {
    media.addTrack(e.track);
    $("#video").srcObject = media;
  };
  channel = pc.createDataChannel("chat");
  channel.onopen = () => { window.mediaweave.channelOpen = true; };
  channel.onmessage = (e) => {
    try { addChat(JSON.parse(e.data)); } catch { addChat({ from: "?", text: String(e.data) }); }
  };
  await pc.setLocalDescription(await pc.createOffer());
  await waitForIce(pc);
  const res = await fetch("/offer/" + encodeURIComponent(name), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer" }),
  });
  const body = await res.json();
  if (!res.ok) {
    showError(`cannot watch ${name}: ${body.error}`);
    stop();
    return;
  }
  await pc.setRemoteDescription(body);
  window.mediaweave.watching = name;
  statsTimer = setInterval(updateStats, 1000);
}

async function updateStats() {
  if (!pc) return;
  const report = await pc.getStats();
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

function addChat(msg) {
  window.mediaweave.chat.push(msg);
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

refresh();
setInterval(refresh, 2000);
