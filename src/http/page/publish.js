// The /publish page: this browser becomes a producer on mediaweave's signalling server
// (GStreamer WebRTC signalling protocol over /ws) with meta.publish = the target pipeline; the
// pipeline starts a session with it, we offer camera + microphone, trickle ICE both ways.
"use strict";

const $ = (sel) => document.querySelector(sel);

// The token helpers (api, withToken, reasonOf, showAuthNotice, authProblem, token) come from
// token.js; a new token reloads the list of pipelines.
onTokenChange(() => loadTargets().catch((e) => showError(String(e))));

// The signalling WebSocket's URL; the token goes in it, as a browser's WebSocket cannot send
// headers.
function wsUrl(path) {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${withToken(path)}`;
}

window.mediaweavePublish = { state: "idle", sessionId: null, token: () => token };

let ws = null, pc = null, stream = null, sessionId = null;

// The layers a simulcast publisher sends, lowest first (as rids "q", "h", "f").
const SIMULCAST_LAYERS = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 200_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 700_000 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 2_000_000 },
];

function setState(state) {
  window.mediaweavePublish.state = state;
  $("#publish-status").textContent = state;
}

function showError(text) {
  $("#error").textContent = text;
  $("#error").hidden = !text;
}

// The pipeline chosen in the list, or typed when the token may publish but not list (403).
function targetName() {
  const select = $("#target");
  return select.hidden ? $("#target-name").value.trim() : select.value;
}

function typeTarget(typed) {
  $("#target").hidden = typed;
  $("#target-name").hidden = !typed;
}

let loading = 0; // only the latest load of the list updates the page

async function loadTargets() {
  const seq = ++loading;
  const res = await api("/api/pipelines");
  if (seq !== loading) return;
  const select = $("#target");
  if (res.status === 401 || res.status === 403) {
    const reason = await reasonOf(res);
    if (seq !== loading) return;
    select.replaceChildren();
    if (res.status === 401) {
      showAuthNotice(authProblem(401, reason), true);
      typeTarget(false);
    } else {
      // e.g. a publish-only token: it may not list pipelines, but may publish into its own.
      showAuthNotice(`${reason}: type the name of the pipeline to publish into`);
      typeTarget(true);
    }
    return;
  }
  if (!res.ok) throw new Error(await reasonOf(res));
  const list = await res.json();
  if (seq !== loading) return;
  const chosen = select.value;
  typeTarget(false);
  select.replaceChildren();
  for (const p of list) {
    if (p.state === "playing" && (p.source || "").startsWith("webrtc publisher")) {
      const o = document.createElement("option");
      o.value = o.textContent = p.name;
      select.append(o);
    }
  }
  if (chosen && [...select.options].some((o) => o.value === chosen)) select.value = chosen;
  if (!select.options.length) showError("no pipeline accepts publishers (add one with [source] kind = \"webrtc\")");
  else if (!ws) showError("");
}

function send(msg) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
}

async function startSession(id) {
  sessionId = id;
  window.mediaweavePublish.sessionId = id;
  pc = new RTCPeerConnection();
  for (const track of stream.getTracks()) {
    const init = { direction: "sendonly", streams: [stream] };
    // Simulcast: three layers of the camera (full, ½ and ¼ size), each encoded by the browser;
    // the service relays each viewer the layer its link carries.
    if (track.kind === "video" && $("#simulcast").checked) init.sendEncodings = SIMULCAST_LAYERS;
    pc.addTransceiver(track, init);
  }
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
      send({ type: "setPeerStatus", roles: ["producer"], meta: { name: "browser", publish: targetName() } });
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
  if (!targetName()) {
    showError("choose the pipeline to publish into");
    return;
  }
  try {
    // Simulcast needs a large enough picture for three layers (a browser drops layers below ~320x180).
    const video = $("#simulcast").checked ? { width: { ideal: 1280 }, height: { ideal: 720 } } : true;
    stream = await navigator.mediaDevices.getUserMedia({ video, audio: true });
  } catch (e) {
    showError("no camera or microphone: " + e.message);
    return;
  }
  $("#preview").srcObject = stream;
  // The token goes in the URL: a browser's WebSocket cannot send headers.
  const socket = new WebSocket(wsUrl("/ws"));
  let opened = false;
  ws = socket;
  socket.onopen = () => { opened = true; };
  socket.onmessage = (e) => onMessage(e).catch((err) => showError(String(err)));
  socket.onclose = () => {
    if (ws !== socket) return; // stop() closed it
    if (opened) {
      stop("signalling closed");
      return;
    }
    // Refused before it opened: most likely the token (the signalling server needs a valid one
    // when tokens are configured).
    stop("signalling refused");
    showError(token
      ? "the signalling server refused the connection: is the token valid?"
      : "the signalling server refused the connection: this service may need a token (paste one above)");
  };
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
showTokenState();
loadTargets().catch((e) => showError(String(e)));
