// The /room/NAME page: a video call through mediaweave. Joining publishes this browser's
// camera and microphone with WHIP (POST /whip/NAME?name=...); every other participant gets a
// tile watched with WHEP (POST /whep/NAME/PARTICIPANT). Joins and leaves arrive as events
// (/api/events), so tiles come and go at once. The chat rides on the publishing session's
// data channel: a line typed here reaches everybody in the room, with our name.
"use strict";

const $ = (sel) => document.querySelector(sel);
const room = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");

// What the tests read: who we are, the tiles and what they decoded, the chat as shown.
window.mediaweaveRoom = { state: "idle", me: null, tiles: {}, chat: [], token: () => token };

let me = null;        // { id, location, pc, channel, stream }
let events = null;    // the /api/events WebSocket
const tiles = new Map(); // participant id → { pc, location, figure, video, name, closed }

onTokenChange(() => { if (!me) showError(""); });

function setState(state) {
  window.mediaweaveRoom.state = state;
  $("#room-status").textContent = state;
}

function showError(text) {
  $("#error").textContent = text;
  $("#error").hidden = !text;
}

function wsUrl(path) {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${withToken(path)}`;
}

// Every candidate in the SDP (the service does not trickle): wait for gathering to finish.
function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000); // whatever is gathered by then
  });
}

// POSTs our offer; returns { answer, location } or throws the service's reason.
async function exchange(url, pc) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const res = await api(url, {
    method: "POST",
    headers: { "Content-Type": "application/sdp" },
    body: pc.localDescription.sdp,
  });
  if (!res.ok) {
    const reason = await reasonOf(res);
    if (res.status === 401 || res.status === 403) showAuthNotice(authProblem(res.status, reason), res.status === 401);
    const err = new Error(reason);
    err.status = res.status;
    throw err;
  }
  const answer = await res.text();
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  return res.headers.get("Location");
}

function chatLine(from, text, mine) {
  window.mediaweaveRoom.chat.push({ from, text });
  const li = document.createElement("li");
  if (mine) li.className = "mine";
  const who = document.createElement("span");
  who.className = "from";
  who.textContent = from;
  li.append(who, document.createTextNode(text));
  $("#chat-lines").append(li);
  li.scrollIntoView({ block: "nearest" });
}

async function join(name) {
  showError("");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  } catch (e) {
    showError("no camera or microphone: " + e.message);
    return;
  }
  $("#self").srcObject = stream;
  const pc = new RTCPeerConnection();
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  const channel = pc.createDataChannel("chat");
  channel.onopen = () => { $("#chat-input").disabled = $("#chat-send").disabled = false; };
  channel.onmessage = (e) => {
    let msg;
    try { msg = JSON.parse(e.data); } catch { return; }
    if (typeof msg.text === "string") chatLine(msg.from || "?", msg.text, false);
  };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "connected") setState(`in the room as ${name}`);
    if (pc.connectionState === "failed") leave("the connection failed");
  };
  me = { pc, channel, stream, name, id: null, location: null };
  setState("joining");
  $("#join-form").hidden = true;
  $("#controls").hidden = false;
  try {
    const where = await exchange(`/whip/${encodeURIComponent(room)}?name=${encodeURIComponent(name)}`, pc);
    me.location = where;
    me.id = where ? where.split("/").pop() : null;
    window.mediaweaveRoom.me = me.id;
  } catch (e) {
    leave(e.status === 503 ? `cannot join: ${e.message}` : `cannot join: ${e.message}`);
    showError(e.message);
    return;
  }
  listen();
  await refreshParticipants();
}

// Who is there now: a tile for everyone but us.
async function refreshParticipants() {
  const res = await api(`/api/pipelines/${encodeURIComponent(room)}`);
  if (!res.ok) { showError(await reasonOf(res)); return; }
  const view = await res.json();
  const ids = new Set((view.participants || []).map((p) => p.id));
  for (const p of view.participants || []) if (p.id !== me?.id) addTile(p.id, p.name);
  for (const id of [...tiles.keys()]) if (!ids.has(id)) removeTile(id);
}

// Joins and leaves, as they happen.
function listen() {
  const socket = new WebSocket(wsUrl("/api/events"));
  events = socket;
  socket.onmessage = (e) => {
    let ev;
    try { ev = JSON.parse(e.data); } catch { return; }
    if (ev.pipeline !== room || !me) return;
    const id = ev.fields && ev.fields.participant;
    if (ev.type === "participant_joined" && id !== me.id) addTile(id, ev.fields.name);
    if (ev.type === "participant_left") removeTile(id);
  };
  socket.onclose = () => {
    if (events !== socket || !me) return;
    // Lost the events: fall back to asking now and then, and try again.
    setTimeout(() => { if (me && events === socket) { refreshParticipants(); listen(); } }, 2000);
  };
}

function addTile(id, name) {
  if (!id || tiles.has(id)) return;
  const figure = document.createElement("figure");
  figure.className = "tile";
  figure.dataset.participant = id;
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  const caption = document.createElement("figcaption");
  caption.textContent = name || id;
  figure.append(video, caption);
  $("#tiles").append(figure);
  const tile = { id, name, figure, video, pc: null, location: null, closed: false };
  tiles.set(id, tile);
  window.mediaweaveRoom.tiles[id] = { name, framesDecoded: 0, audioSamples: 0 };
  watchTile(tile, 0);
}

// WHEP for one participant; a participant still connecting answers 503 for a moment: retry.
async function watchTile(tile, attempt) {
  if (tile.closed) return;
  const pc = new RTCPeerConnection();
  tile.pc = pc;
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const stream = new MediaStream();
  pc.ontrack = (e) => { stream.addTrack(e.track); tile.video.srcObject = stream; };
  const url = `/whep/${encodeURIComponent(room)}/${encodeURIComponent(tile.id)}?name=${encodeURIComponent(me.name)}`;
  try {
    tile.location = await exchange(url, pc);
  } catch (e) {
    pc.close();
    if (!tile.closed && e.status === 503 && attempt < 10) {
      setTimeout(() => watchTile(tile, attempt + 1), 500 * (attempt + 1));
    } else if (!tile.closed && e.status !== 404) {
      tile.figure.querySelector("figcaption").textContent += ` (${e.message})`;
    }
  }
}

function removeTile(id) {
  const tile = tiles.get(id);
  if (!tile) return;
  tile.closed = true;
  tiles.delete(id);
  delete window.mediaweaveRoom.tiles[id];
  if (tile.location) api(tile.location, { method: "DELETE", keepalive: true }).catch(() => {});
  if (tile.pc) tile.pc.close();
  tile.figure.remove();
}

// Frames decoded and audio samples received per tile, for the tests (and a glance in the
// console).
setInterval(async () => {
  for (const tile of tiles.values()) {
    if (!tile.pc) continue;
    const report = await tile.pc.getStats();
    report.forEach((s) => {
      const seen = window.mediaweaveRoom.tiles[tile.id];
      if (s.type !== "inbound-rtp" || !seen) return;
      if (s.kind === "video") seen.framesDecoded = s.framesDecoded || 0;
      if (s.kind === "audio") seen.audioSamples = s.totalSamplesReceived || 0;
    });
  }
}, 500);

function leave(reason) {
  for (const id of [...tiles.keys()]) removeTile(id);
  if (me) {
    // keepalive: a closing tab still leaves the room at once, not after the peer timeout.
    if (me.location) api(me.location, { method: "DELETE", keepalive: true }).catch(() => {});
    me.pc.close();
    me.stream.getTracks().forEach((t) => t.stop());
  }
  me = null;
  window.mediaweaveRoom.me = null;
  const socket = events;
  events = null;
  if (socket) socket.close();
  $("#self").srcObject = null;
  $("#join-form").hidden = false;
  $("#controls").hidden = true;
  $("#chat-input").disabled = $("#chat-send").disabled = true;
  setState(reason || "left");
}

function toggle(kind, button, on, off) {
  if (!me) return;
  const tracks = kind === "audio" ? me.stream.getAudioTracks() : me.stream.getVideoTracks();
  const enabled = !tracks.every((t) => !t.enabled);
  tracks.forEach((t) => { t.enabled = !enabled; });
  button.textContent = enabled ? on : off;
}

$("#room-name").textContent = room;
document.title = `mediaweave · ${room}`;
try { $("#display-name").value = localStorage.getItem("mediaweave-name") || ""; } catch { /* no storage */ }
$("#join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = $("#display-name").value.trim();
  if (!name) { $("#display-name").focus(); return; }
  try { localStorage.setItem("mediaweave-name", name); } catch { /* no storage */ }
  join(name);
});
$("#chat-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("#chat-input").value.trim();
  if (!text || !me || me.channel.readyState !== "open") return;
  me.channel.send(text);
  chatLine(me.name, text, true);
  $("#chat-input").value = "";
});
$("#mute").addEventListener("click", () => toggle("audio", $("#mute"), "unmute", "mute"));
$("#camera").addEventListener("click", () => toggle("video", $("#camera"), "camera on", "camera off"));
$("#leave").addEventListener("click", () => leave());
window.addEventListener("pagehide", () => { if (me) leave(); });
showTokenState();
