// Two chat peers of pipeline NAME, driven by a test: the page (headless Chromium watching NAME,
// its data-channel chat) and a socket.io-client (Node) connected to BASE/socket.io/?room=NAME,
// as the tutorials' JavaScript client connects.
//   node chat_peers.mjs BASE NAME
// Prints {"ready": true} once the page's chat channel is open and the client is connected,
// then one JSON line per line heard: {"who": "page" | "node", "heard": TEXT, "from": ...}.
// Commands on stdin, one per line: "page TEXT" (typed into the page's chat), "node TEXT"
// (emitted as `chat_message`), "quit".
import { launch } from "./chromium.mjs";
import { io } from "socket.io-client";
import { createInterface } from "node:readline";

const [, , base, name] = process.argv;
const out = (obj) => console.log(JSON.stringify(obj));

const { context, close } = await launch([
  "--allow-loopback-in-peer-connection",
  "--disable-features=WebRtcHideLocalIpsWithMdns",
]);
const socket = io(base, { query: { room: name }, reconnection: false });
try {
  const page = await context.newPage();
  await page.goto(base);
  const button = page.locator(`button[data-watch="${name}"]`);
  await button.waitFor({ timeout: 20000 });
  await button.click();
  await page.waitForFunction(() => window.mediaweave.channelOpen, null, { timeout: 30000 });
  await page.exposeFunction("heardOnPage", (msg) => out({ who: "page", heard: msg.text, from: msg.from }));
  await page.evaluate(() => {
    const chat = window.mediaweave.chat;
    const push = chat.push.bind(chat);
    chat.push = (msg) => {
      if (msg.from !== "me") window.heardOnPage(msg);
      return push(msg);
    };
  });
  // It may have connected while the page loaded.
  if (!socket.connected) {
    await new Promise((resolve, reject) => {
      socket.on("connect", resolve);
      socket.on("connect_error", reject);
    });
  }
  socket.on("chat_message", (text) => out({ who: "node", heard: text }));
  out({ ready: true, transport: socket.io.engine.transport.name });

  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const space = line.indexOf(" ");
    const [who, text] = space < 0 ? [line, ""] : [line.slice(0, space), line.slice(space + 1)];
    if (who === "page") {
      await page.fill("#chat-input", text);
      await page.click("#chat-send");
    } else if (who === "node") {
      socket.emit("chat_message", text);
    } else if (who === "quit") {
      break;
    }
  }
} catch (e) {
  out({ error: String(e) });
  process.exitCode = 1;
} finally {
  socket.close();
  await close();
}
