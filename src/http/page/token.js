// The access token both pages use (loaded before app.js and publish.js, which share its
// globals). The service may require one; with no token configured, none is needed and none is
// sent. It comes from ?token= in the page's URL (kept in localStorage, then removed from the
// address bar so it stays out of the history), else from localStorage, else from the header's
// token field. A page says what to do when it changes with onTokenChange().
"use strict";

const TOKEN_KEY = "mediaweave-token";
let token = storedToken();
{
  const here = new URL(location.href);
  if (here.searchParams.has("token")) {
    storeToken(here.searchParams.get("token"));
    here.searchParams.delete("token");
    history.replaceState(history.state, "", here.pathname + here.search + here.hash);
  }
}

function storedToken() {
  try { return localStorage.getItem(TOKEN_KEY) || null; } catch { return null; } // storage off
}

function storeToken(value) {
  token = (value || "").trim() || null;
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch { /* storage unavailable: the token lasts as long as this page */ }
}

// Only this service's URLs get the token.
function ours(url) {
  return new URL(url, location.href).origin === location.origin;
}

// fetch, with `Authorization: Bearer TOKEN` when a token is set. A success clears the notice
// about a missing or refused token.
async function api(url, options = {}) {
  let init = options;
  if (token && ours(url)) {
    const headers = new Headers(options.headers);
    headers.set("Authorization", `Bearer ${token}`);
    init = { ...options, headers };
  }
  const res = await fetch(url, init);
  if (res.ok) showAuthNotice("");
  return res;
}

// For what cannot carry a header (WebSocket, <video src>, links to open in a new tab).
function withToken(url) {
  if (!token || !ours(url)) return url;
  return `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
}

// The JSON `error` of a failed response, else its status.
async function reasonOf(res) {
  try { return (await res.json()).error || `HTTP ${res.status}`; } catch { return `HTTP ${res.status}`; }
}

// The notice under the header: a missing or refused token (401) focuses the token field.
function showAuthNotice(text, focus = false) {
  const notice = document.querySelector("#auth-message");
  if (focus && (notice.hidden || notice.textContent !== text)) document.querySelector("#token-input").focus();
  if (notice.textContent !== text) notice.textContent = text;
  notice.hidden = !text;
}

// The notice for a refused request: 401 asks for a token, 403 says what the token may not do.
function authProblem(status, reason) {
  if (status !== 401) return reason; // 403: the server says what the token may not do
  const msg = "This service needs a token: paste one above";
  return token ? `${msg} (the one in use was refused: ${reason})` : msg;
}

function showTokenState() {
  const input = document.querySelector("#token-input");
  input.placeholder = token ? "token set" : "token";
  input.title = token ? "a token is in use: paste another to replace it" : "access token, if the service needs one";
  document.querySelector("#token-forget").hidden = !token;
}

let tokenListener = () => {};

// What the page does when the token changes (reload what it shows).
function onTokenChange(listener) {
  tokenListener = listener;
}

function tokenChanged() {
  showTokenState();
  tokenListener();
}

document.querySelector("#token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = document.querySelector("#token-input");
  if (!input.value.trim()) { input.focus(); return; }
  storeToken(input.value);
  input.value = "";
  tokenChanged();
});
document.querySelector("#token-forget").addEventListener("click", (e) => {
  e.preventDefault();
  storeToken(null);
  tokenChanged();
});
// Another tab (this page or /publish) set or forgot the token.
window.addEventListener("storage", (e) => {
  if (e.key !== TOKEN_KEY && e.key !== null) return;
  token = storedToken();
  tokenChanged();
});
