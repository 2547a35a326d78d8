// The /publish page: this browser becomes a producer on mediaweave's signalling server
// (GStreamer WebRTC signalling protocol over /ws) with meta.publish = the target pipeline; the
// pipeline starts a session with it, we offer camera + microphone, trickle ICE both ways.
"use strict";

const $ = (sel) => document.querySelector(sel);
window.mediaweavePublish = { state: "idle", sessionId: null };

let ws = null, pc = null, stream = null, sessionId = null;

function setState(state) {
  window.mediaweavePublish.state = state;
  $("#publish-status").textContent = state;
}

function showError(text) {
  $("#error").textContent = text;
  $("#error").hidden = !text;
}

async function loadTargets() {
  const list = await (await fetch("/api/pipelines")).json();
  const select = $("#target");
  select.replaceChildren();
  for (const p of list) {
    if (p.state === "playing" && (p.source || "").startsWith("webrtc publisher")) {
      const o = document.createElement("option");
      o.value = o.textContent = p.name;
      select.append(o);
    }
  }
  if (!select.options.length) showError("no pipeline accepts publishers (add one with [source] kind = \"webrtc\")");
}

function send(msg) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
}

async function startSession(id) {
  sessionId = id;
  window.mediaweavePublish.sessionId = id;
  pc = new RTCPeerConnection();
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  pc.onicecandidate = (e) => {
    if (e.candidate && e.candidate.candidate) {
      send({ type: "peer", sessionId: id, ice: { candidate: e.candidate.candidate, sdpMLineIndex: e.candidate.sdpMLineIndex } });
    }
  };
  pc.onconnectionstatechange = () => {
    if (pc && pc.connectionState === "connected") setState("publishing");
    if (pc && ["failed", "closed"].includes(pc.connectionState)) setState("ended: " + pc.connectionState);
  };
  await pc.setLocalDescription(await pc.createOffer());
  send({ type: "peer", sessionId: id, sdp: { type: "offer", sdp: pc.localDescription.sdp } });
}

async function onMessage(event) {
  let msg;
  try { msg = JSON.parse(event.data); } catch { return; }
  switch (msg.type) {
    case "welcome":
      send({ type: "setPeerStatus", roles: ["producer"], meta: { name: "browser", publish: $("#target").value } });
      setState("waiting for the pipeline");
      break;
    case "startSession":
      await startSession(msg.sessionId);
      break;
    case "peer":
      if (msg.sessionId !== sessionId || !pc) break;
      if (msg.sdp) await pc.setRemoteDescription(msg.sdp);
      if (msg.ice && msg.ice.candidate) await pc.addIceCandidate(msg.ice);
      break;
    case "endSession":
      if (msg.sessionId === sessionId) stop("ended by the server");
      break;
    case "error":
      showError(msg.details);
      break;
  }
}

async function start() {
  showError("");
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  } catch (e) {
    showError("no camera or microphone: " + e.message);
    return;
  }
  $("#preview").srcObject = stream;
  ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.onmessage = (e) => onMessage(e).catch((err) => showError(String(err)));
  ws.onclose = () => { if (pc) stop("signalling closed"); };
  $("#start").disabled = true;
  $("#stop").disabled = false;
  setState("connecting");
}

function stop(reason) {
  if (sessionId) send({ type: "endSession", sessionId });
  if (pc) pc.close();
  if (ws) ws.close();
  if (stream) stream.getTracks().forEach((t) => t.stop());
  pc = ws = stream = sessionId = null;
  $("#start").disabled = false;
  $("#stop").disabled = true;
  setState(reason || "stopped");
}

$("#publish-form").addEventListener("submit", (e) => { e.preventDefault(); start(); });
$("#stop").addEventListener("click", () => stop());
loadTargets().catch((e) => showError(String(e)));
