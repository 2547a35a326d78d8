// hls.js (default configuration) in Debian's headless Chromium plays an HLS playlist of
// mediaweave's and reads the time stamp that the `stamp` hook draws into each frame as the
// frame is shown (requestVideoFrameCallback; the stamp's top row of blocks drawn to a canvas):
// glass-to-glass latency, Date.now() − stamp, per presented frame. For the benchmark's `reach`
// scenario.
//
//   node hls_stamps.mjs BASE PLAYLIST_PATH FRAMES SECONDS SKIP [CONFIG]
//
// BASE is the service (the page is opened there, so the playlist is same-origin); the first
// SKIP stamped frames are left out, then FRAMES frames or SECONDS seconds are read. Prints one
// JSON line: latencies_ms, frames, the first frame's time, and what hls.js says of its own
// position (hls.latency: seconds behind the playlist's live edge; hls.targetLatency). CONFIG,
// JSON, is given to new Hls() (e.g. {"liveSyncDurationCount": 1}); the default is hls.js's own.
import { launch } from "./chromium.mjs";
import { fileURLToPath } from "node:url";

const [, , base, path, frames, seconds, skip, config] = process.argv;
const { context, close } = await launch();

try {
  const page = await context.newPage();
  await page.goto(base);
  await page.setContent('<video id="v" muted autoplay playsinline></video>');
  await page.addScriptTag({
    path: fileURLToPath(new URL("node_modules/hls.js/dist/hls.min.js", import.meta.url)),
  });
  const started = Date.now();
  const result = await page.evaluate(([src, want, seconds, skip, config]) => new Promise((resolve) => {
    const BITS = 40, BLOCK = 24;
    const video = document.getElementById("v");
    const canvas = document.createElement("canvas");
    canvas.width = BITS * BLOCK;
    canvas.height = BLOCK;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    const errors = [], latencies = [], hlsLatency = [];
    let presented = 0, skipped = 0, unreadable = 0, firstFrame = null, since = null;
    const t0 = performance.now();
    const hls = new Hls(config);
    hls.on(Hls.Events.ERROR, (_, d) => errors.push(`${d.type}: ${d.details}`));
    hls.loadSource(src);
    hls.attachMedia(video);
    video.play().catch(() => {});
    const finish = (why) => {
      hls.destroy();
      resolve({
        frames: latencies.length, presented, unreadable, first_frame_ms: firstFrame,
        seconds: since === null ? null : (performance.now() - since) / 1000,
        latencies_ms: latencies, hls_latency_s: hlsLatency, target_latency_s: hls.targetLatency,
        errors: errors.slice(0, 5), ended: why,
      });
    };
    const onFrame = () => {
      const now = Date.now();
      presented += 1;
      if (firstFrame === null) firstFrame = performance.now() - t0;
      if (video.videoWidth >= BITS * BLOCK) {
        ctx.drawImage(video, 0, 0, BITS * BLOCK, BLOCK, 0, 0, BITS * BLOCK, BLOCK);
        const row = ctx.getImageData(0, BLOCK / 2, BITS * BLOCK, 1).data;
        let stamp = 0;
        for (let b = 0; b < BITS; b++) stamp = stamp * 2 + (row[4 * (b * BLOCK + BLOCK / 2) + 1] >= 128 ? 1 : 0);
        // The stamp is milliseconds since the epoch modulo 2^40.
        const latency = (((now - stamp) % 2 ** 40) + 2 ** 40) % 2 ** 40;
        if (latency >= 60000) unreadable += 1;
        else if (skipped < skip) skipped += 1;
        else {
          if (since === null) since = performance.now();
          latencies.push(latency);
          if (latencies.length % 30 === 0 && hls.latency !== undefined) hlsLatency.push(hls.latency);
          if (latencies.length >= want || performance.now() - since >= seconds * 1000) return finish("done");
        }
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
    setTimeout(() => finish("timed out"), 30000 + (seconds + skip / 30) * 1000);
  }), [path, Number(frames), Number(seconds), Number(skip), JSON.parse(config || "{}")]);
  result.run_ms = Date.now() - started;
  console.log(JSON.stringify(result));
} catch (e) {
  console.log(JSON.stringify({ error: String(e) }));
  process.exitCode = 1;
} finally {
  await close();
}
