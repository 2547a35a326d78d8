// Headless Chromium (Debian's) against mediaweave's page.
//   node view.mjs BASE NAME watch  → opens the page, clicks "watch" for NAME, waits for ≥ 60
//                                    decoded frames, prints the page's stats as JSON
//   node view.mjs BASE NAME follow → watches NAME through a pause (its source failing and
//                                    coming back); prints the longest pause and frames after it
//   node view.mjs BASE NAME chat   → two pages watch NAME; page A sends a chat line; prints
//                                    whether page B received it
//   node view.mjs BASE NAME dashboard → waits for NAME's bitrate and fps charts to have data,
//                                    opens its graph, prints the latest values and the graph size
//   node view.mjs BASE NAME publish → the /publish page sends the fake camera + microphone to
//                                    pipeline NAME for PUBLISH_SECONDS (5), then stops; with
//                                    SIMULCAST=1 it ticks "simulcast" (three layers)
//   node view.mjs BASE NAME whip-simulcast → the fake camera (1280x720) goes to NAME over WHIP
//                                    in three layers (rids lo, mid, hi) for PUBLISH_SECONDS (5);
//                                    prints the WHIP status and Location; its top layer is
//                                    paused while the file PAUSE_FILE exists
//   node view.mjs BASE NAME relay  → page A shows NAME waiting for a publisher; page B publishes
//                                    the fake camera to NAME from /publish; page A watches it
//                                    (≥ 60 frames) and prints its stats
//   node view.mjs BASE NAME room   → two pages join room NAME at /room/NAME (as "ana" and "ben",
//                                    the fake camera and microphone); each decodes ≥ 60 frames
//                                    of the other's tile; ana says a line, ben's chat shows it;
//                                    the front page links the room with its count; ben leaves
//                                    and ana's page drops his tile
//   node view.mjs BASE NAME linger → watches NAME for WATCH_SECONDS (20) whatever arrives (a
//                                    viewer on a slow link), prints "connected" once its first
//                                    frame is decoded, then the page's stats at the end
//   node view.mjs BASE NAME samples → watches NAME for WATCH_SECONDS (60) and prints the page's
//                                    stats as one JSON line a second (decoded frames, size,
//                                    freezes, and the rung and estimate the service reports)
//   node view.mjs BASE NAME hls    → the page offers "HLS" for NAME; its playlist plays in
//                                    hls.js for ≥ 5 s; prints the link, the time played, the
//                                    frames decoded and the video's size
import { launch } from "./chromium.mjs";
import { fileURLToPath } from "node:url";
import { existsSync } from "node:fs";

const [, , base, name, mode] = process.argv;
const { context, close } = await launch([
  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
  // The tests run in a loopback-only network: offer 127.0.0.1 candidates, unobfuscated.
  "--allow-loopback-in-peer-connection",
  "--disable-features=WebRtcHideLocalIpsWithMdns",
  // The camera needs a secure origin; tests serve plain HTTP, on addresses of their own.
  `--unsafely-treat-insecure-origin-as-secure=${base}`,
]);

async function watching(page) {
  await page.goto(base);
  const button = page.locator(`button[data-watch="${name}"]`);
  await button.waitFor({ timeout: 20000 });
  await button.click();
}

// PUBLISHER_STATS=1: a simulcast publisher's layers as its browser sees them (frames and
// keyframes encoded, FIR/PLI received, size, what limits it), every 2 s on stderr.
if (process.env.PUBLISHER_STATS === "1") {
  await context.addInitScript(() => {
    const Native = window.RTCPeerConnection;
    window.__peers = [];
    window.RTCPeerConnection = function (...args) {
      const pc = new Native(...args);
      window.__peers.push(pc);
      return pc;
    };
    window.RTCPeerConnection.prototype = Native.prototype;
  });
  context.on("page", (page) => {
    const timer = setInterval(async () => {
      try {
        const rows = await page.evaluate(async () => {
          const out = [];
          for (const pc of window.__peers || []) {
            (await pc.getStats()).forEach((r) => {
              if (r.type === "outbound-rtp" && r.kind === "video") {
                out.push(`${r.rid}: ${r.framesEncoded} frames, ${r.keyFramesEncoded} key, fir ${r.firCount} pli ${r.pliCount}, ${r.frameWidth}x${r.frameHeight}, limited by ${r.qualityLimitationReason}`);
              }
            });
          }
          return out;
        });
        console.error(`${new Date().toISOString()} publisher layers: ${rows.join(" | ")}`);
      } catch {
        clearInterval(timer);
      }
    }, 2000);
  });
}

try {
  if (mode === "watch") {
    const page = await context.newPage();
    await watching(page);
    await page.waitForFunction(() => (window.mediaweave.stats.framesDecoded || 0) >= 60, null, { timeout: 40000 });
    const stats = await page.evaluate(() => window.mediaweave.stats);
    const shown = await page.locator("#stat-resolution").textContent();
    // Stopping sends the WHEP DELETE; the test checks the session is gone right away.
    await page.click("#stop");
    await page.waitForTimeout(300);
    console.log(JSON.stringify({ ...stats, shownResolution: shown }));
  } else if (mode === "linger") {
    const page = await context.newPage();
    await watching(page);
    await page.waitForFunction(() => (window.mediaweave.stats.framesDecoded || 0) >= 1, null, { timeout: 40000 });
    console.log(JSON.stringify({ connected: true }));
    await page.waitForTimeout(Number(process.env.WATCH_SECONDS || "20") * 1000);
    const stats = await page.evaluate(() => window.mediaweave.stats);
    await page.click("#stop");
    await page.waitForTimeout(300);
    console.log(JSON.stringify(stats));
  } else if (mode === "follow") {
    // Keeps watching while the pipeline's source fails and comes back: waits for a pause of
    // over 2.5 s in decoded frames (they are read once a second) followed by 60 more.
    const page = await context.newPage();
    await watching(page);
    await page.waitForFunction(() => (window.mediaweave.stats.framesDecoded || 0) >= 30, null, { timeout: 40000 });
    let last = await page.evaluate(() => window.mediaweave.stats.framesDecoded || 0);
    let lastChange = Date.now(), maxGapMs = 0, atGap = last;
    const deadline = Date.now() + 60000;
    while (Date.now() < deadline) {
      await page.waitForTimeout(100);
      const now = await page.evaluate(() => window.mediaweave.stats.framesDecoded || 0);
      if (now !== last) {
        const gap = Date.now() - lastChange;
        if (gap > maxGapMs) { maxGapMs = gap; atGap = last; }
        last = now; lastChange = Date.now();
      }
      if (maxGapMs >= 2500 && last - atGap >= 60) break;
    }
    const stats = await page.evaluate(() => window.mediaweave.stats);
    console.log(JSON.stringify({ ...stats, maxGapMs, framesAfterGap: last - atGap }));
  } else if (mode === "chat") {
    const a = await context.newPage();
    const b = await context.newPage();
    await watching(a);
    await watching(b);
    for (const p of [a, b]) {
      await p.waitForFunction(() => window.mediaweave.channelOpen, null, { timeout: 30000 });
    }
    const text = "hello from page A";
    await a.fill("#chat-input", text);
    await a.click("#chat-send");
    await b.waitForFunction((t) => window.mediaweave.chat.some((m) => m.text === t), text, { timeout: 15000 });
    const shown = await b.locator("#chat-log").textContent();
    console.log(JSON.stringify({ received: true, shown }));
  } else if (mode === "publish") {
    // NAME is the target pipeline; Chromium's fake camera and microphone are the source.
    const page = await context.newPage();
    await page.goto(base + "/publish");
    await page.waitForFunction((n) => [...document.querySelectorAll("#target option")].some((o) => o.value === n), name, { timeout: 20000 });
    await page.selectOption("#target", name);
    if (process.env.SIMULCAST === "1") await page.check("#simulcast");
    await page.click("#start");
    await page.waitForFunction(() => window.mediaweavePublish.state === "publishing", null, { timeout: 30000 });
    const seconds = Number(process.env.PUBLISH_SECONDS || "5");
    await page.waitForTimeout(seconds * 1000);
    await page.click("#stop");
    await page.waitForTimeout(500);
    console.log(JSON.stringify({ published: true, seconds }));
  } else if (mode === "whip-simulcast") {
    const page = await context.newPage();
    await page.goto(base + "/publish"); // any page: fetch and the camera need its origin
    const result = await page.evaluate(async (name) => {
      const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: false });
      const pc = new RTCPeerConnection();
      pc.addTransceiver(stream.getVideoTracks()[0], {
        direction: "sendonly",
        sendEncodings: [
          { rid: "lo", scaleResolutionDownBy: 4, maxBitrate: 200000 },
          { rid: "mid", scaleResolutionDownBy: 2, maxBitrate: 700000 },
          { rid: "hi", maxBitrate: 2000000 },
        ],
      });
      await pc.setLocalDescription(await pc.createOffer());
      await new Promise((done) => {
        if (pc.iceGatheringState === "complete") return done();
        pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && done();
      });
      const res = await fetch(`/whip/${name}`, { method: "POST", headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp });
      if (res.status !== 201) return { status: res.status, error: await res.text() };
      await pc.setRemoteDescription({ type: "answer", sdp: await res.text() });
      window.whip = pc;
      return { status: res.status, location: res.headers.get("Location") };
    }, name);
    console.log(JSON.stringify(result));
    // PAUSE_FILE: while that file exists, the top layer ("hi") is paused, as a browser short
    // of uplink pauses it.
    const until = Date.now() + Number(process.env.PUBLISH_SECONDS || "5") * 1000;
    let paused = false;
    while (Date.now() < until) {
      const pause = !!process.env.PAUSE_FILE && existsSync(process.env.PAUSE_FILE);
      if (pause !== paused) {
        await page.evaluate(async (active) => {
          const sender = window.whip.getSenders().find((s) => s.track && s.track.kind === "video");
          const params = sender.getParameters();
          for (const e of params.encodings) if (e.rid === "hi") e.active = active;
          await sender.setParameters(params);
        }, !pause);
        paused = pause;
        console.error(`whip-simulcast: top layer ${pause ? "paused" : "resumed"}`);
      }
      await page.waitForTimeout(250);
    }
  } else if (mode === "relay") {
    // NAME relays what is published to it. Page A shows it waiting; page B publishes the fake
    // camera from /publish; page A's "watch" appears and decodes it.
    const viewer = await context.newPage();
    await viewer.goto(base);
    await viewer.locator(`span[data-waiting="${name}"]`).waitFor({ timeout: 20000 });
    const publisher = await context.newPage();
    await publisher.goto(base + "/publish");
    await publisher.waitForFunction((n) => [...document.querySelectorAll("#target option")].some((o) => o.value === n), name, { timeout: 20000 });
    await publisher.selectOption("#target", name);
    await publisher.click("#start");
    await publisher.waitForFunction(() => window.mediaweavePublish.state === "publishing", null, { timeout: 30000 });
    await watching(viewer);
    await viewer.waitForFunction(() => (window.mediaweave.stats.framesDecoded || 0) >= 60, null, { timeout: 40000 });
    const stats = await viewer.evaluate(() => window.mediaweave.stats);
    const shown = await viewer.locator("#stat-resolution").textContent();
    await viewer.click("#stop");
    await publisher.click("#stop");
    await publisher.waitForTimeout(500);
    console.log(JSON.stringify({ ...stats, shownResolution: shown, waitedFirst: true }));
  } else if (mode === "dashboard") {
    const page = await context.newPage();
    await page.goto(base);
    const filled = (n) => {
      const h = window.mediaweave.history[n];
      const some = (a) => a.filter((v) => v > 0).length >= 3;
      return h && some(h.bitrate) && some(h.fps);
    };
    await page.waitForFunction(filled, name, { timeout: 30000 });
    const latest = await page.evaluate((n) => {
      const last = (a) => a.filter((v) => v !== null).at(-1);
      const h = window.mediaweave.history[n];
      return { bitrate: last(h.bitrate), fps: last(h.fps), viewers: last(h.viewers) };
    }, name);
    const detail = page.locator(`tr[data-detail-of="${name}"]`);
    const charts = await detail.locator("svg").count();
    await detail.locator("summary").click();
    const img = detail.locator("img");
    await page.waitForFunction((el) => el.complete && el.naturalWidth > 0, await img.elementHandle(), { timeout: 20000 });
    const graphWidth = await img.evaluate((el) => el.naturalWidth);
    console.log(JSON.stringify({ ...latest, charts, graphWidth }));
  } else if (mode === "recordings") {
    // NAME is a pipeline with a finished recording: play its newest from the page's list.
    const page = await context.newPage();
    await page.goto(base);
    const button = page.locator(`button[data-play^="/recordings/${name}/"]`).first();
    await button.waitFor({ timeout: 20000 });
    await button.click();
    const shown = await page.evaluate(() => new Promise((resolve) => {
      const v = document.querySelector("#playback");
      const done = () => resolve({ played: true, width: v.videoWidth, height: v.videoHeight, duration: v.duration });
      if (v.readyState >= 2) done();
      v.addEventListener("loadeddata", done, { once: true });
      v.addEventListener("error", () => resolve({ played: false, error: v.error && v.error.message }), { once: true });
      setTimeout(() => resolve({ played: false, error: "timeout" }), 15000);
    }));
    console.log(JSON.stringify(shown));
  } else if (mode === "samples") {
    const page = await context.newPage();
    await watching(page);
    const end = Date.now() + Number(process.env.WATCH_SECONDS || "60") * 1000;
    while (Date.now() < end) {
      await page.waitForTimeout(1000);
      const stats = await page.evaluate(() => window.mediaweave.stats);
      console.log(JSON.stringify({ ...stats, at: Date.now() }));
    }
    await page.click("#stop");
    await page.waitForTimeout(300);
  } else if (mode === "hls") {
    const page = await context.newPage();
    await page.goto(base);
    const link = page.locator(`a[data-hls="${name}"]`);
    await link.waitFor({ timeout: 20000 });
    const href = await link.getAttribute("href");
    // Same origin as the service (no CORS needed): a bare video element driven by hls.js.
    await page.setContent('<video id="v" muted autoplay playsinline></video>');
    await page.addScriptTag({
      path: fileURLToPath(new URL("node_modules/hls.js/dist/hls.min.js", import.meta.url)),
    });
    await page.evaluate((src) => {
      const video = document.getElementById("v");
      window.hlsErrors = [];
      const hls = new Hls();
      hls.on(Hls.Events.ERROR, (_, data) => window.hlsErrors.push(`${data.type}: ${data.details}`));
      hls.loadSource(src);
      hls.attachMedia(video);
      video.play().catch(() => {});
    }, href);
    // Five seconds played from when the first frame showed.
    await page.waitForFunction(() => document.getElementById("v").currentTime > 0, null, { timeout: 30000 });
    const start = await page.evaluate(() => document.getElementById("v").currentTime);
    await page.waitForFunction((t0) => document.getElementById("v").currentTime >= t0 + 5, start, { timeout: 30000 });
    const seen = await page.evaluate(() => {
      const v = document.getElementById("v");
      return {
        played: v.currentTime,
        frames: v.getVideoPlaybackQuality().totalVideoFrames,
        width: v.videoWidth,
        height: v.videoHeight,
        errors: window.hlsErrors,
      };
    });
    console.log(JSON.stringify({ href, start, ...seen }));
  } else if (mode === "room") {
    const joined = async (who) => {
      const page = await context.newPage();
      await page.goto(`${base}/room/${name}`);
      await page.fill("#display-name", who);
      await page.click("#join");
      await page.waitForFunction(() => window.mediaweaveRoom.me, null, { timeout: 30000 });
      return page;
    };
    const ana = await joined("ana");
    const ben = await joined("ben");
    const decoded = (page) => page.waitForFunction(() => {
      const tiles = Object.values(window.mediaweaveRoom.tiles);
      return tiles.length === 1 && tiles[0].framesDecoded >= 60;
    }, null, { timeout: 40000 });
    await Promise.all([decoded(ana), decoded(ben)]);
    const seen = {};
    for (const [who, page] of [["ana", ana], ["ben", ben]]) {
      seen[who] = await page.evaluate(() => Object.values(window.mediaweaveRoom.tiles)[0]);
    }
    const text = "hello from ana's page";
    await ana.waitForFunction(() => !document.querySelector("#chat-send").disabled, null, { timeout: 15000 });
    await ana.fill("#chat-input", text);
    await ana.click("#chat-send");
    await ben.waitForFunction((t) => window.mediaweaveRoom.chat.some((m) => m.text === t), text, { timeout: 15000 });
    const heard = await ben.evaluate((t) => window.mediaweaveRoom.chat.find((m) => m.text === t), text);
    const front = await context.newPage();
    await front.goto(base);
    const link = front.locator(`a[data-room="${name}"]`);
    await link.waitFor({ timeout: 20000 });
    await front.waitForFunction((n) => document.querySelector(`a[data-room="${n}"]`).textContent.includes("(2 participants)"), name, { timeout: 10000 });
    const linkText = await link.textContent();
    await ben.click("#leave");
    await ana.waitForFunction(() => Object.keys(window.mediaweaveRoom.tiles).length === 0, null, { timeout: 15000 });
    await ana.click("#leave");
    await ana.waitForTimeout(500);
    console.log(JSON.stringify({ seen, heard, linkText, tileGone: true }));
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
} catch (e) {
  console.log(JSON.stringify({ error: String(e) }));
  process.exitCode = 1;
} finally {
  await close();
}
