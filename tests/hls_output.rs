//! The `hls` output: the playlist at `/hls/{name}/index.m3u8` plays in ffmpeg (≥ 5 s read)
//! and in headless Chromium through hls.js (≥ 5 s played), linked from the page; the
//! segments on disk stay bounded while it runs; with tokens, `?token=` reaches the segments
//! too; a published stream's Opus becomes AAC.

mod common;
use common::*;
use sha2::Digest;
use std::time::{Duration, Instant};

const CAM: &str = "[source]\nkind = \"test\"\nwidth = 320\nheight = 240\n\n[[output]]\nkind = \"hls\"\nplaylist_length = 3\n\n[[output]]\nkind = \"webrtc\"\n";

fn playlist_url(base: &str, name: &str) -> String {
    format!("{base}/hls/{name}/index.m3u8")
}

/// Waits until `url` (a playlist) names a segment.
fn wait_playlist(url: &str) {
    wait_for("the first HLS segment", Duration::from_secs(30), || {
        let (status, text) = get_text(url);
        (status == 200 && text.contains(".ts")).then_some(())
    });
}

#[test]
fn hls_plays_in_ffmpeg_and_chromium_and_its_segments_stay_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "cam", CAM);
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "cam", "playing");
    let url = playlist_url(&base, "cam");
    wait_playlist(&url);
    let hls_dir = server
        .server
        .as_ref()
        .and_then(|s| s.hls.dir("cam"))
        .expect("cam's HLS directory");

    // Over 60 s, while the players read, the segments on disk stay bounded and keep turning
    // over.
    let sampler = std::thread::spawn(move || {
        let (mut most, mut names) = (0, std::collections::BTreeSet::new());
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            let segments: Vec<String> = std::fs::read_dir(&hls_dir)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().to_string())
                        .filter(|f| f.ends_with(".ts"))
                        .collect()
                })
                .unwrap_or_default();
            most = most.max(segments.len());
            names.extend(segments);
            std::thread::sleep(Duration::from_millis(250));
        }
        (most, names.len())
    });

    let seen = probe_frames(&url, &[], 5);
    let video = probed(&seen, "video").unwrap_or_else(|| panic!("no video: {seen}"));
    assert_eq!(video["codec_name"], "h264", "{seen}");
    assert_eq!(
        (video["width"].as_i64(), video["height"].as_i64()),
        (Some(320), Some(240)),
        "{seen}"
    );
    // Five seconds at 30 fps.
    assert!(probed_frames(&seen, "video") >= 145, "{seen}");
    assert_eq!(
        probed(&seen, "audio").map(|a| a["codec_name"].clone()),
        Some("aac".into()),
        "{seen}"
    );

    // The page links the playlist; hls.js in Chromium plays it for 5 s.
    let played = chromium(&base, "cam", "hls");
    assert_eq!(played["href"], "/hls/cam/index.m3u8", "{played}");
    assert!(played["frames"].as_i64().unwrap_or(0) >= 100, "{played}");
    assert_eq!(
        (played["width"].as_i64(), played["height"].as_i64()),
        (Some(320), Some(240)),
        "{played}"
    );

    let (most, distinct) = sampler.join().expect("sampler");
    // The 3 segments the playlist names, 2 kept for late players, the one being written.
    assert!(most <= 6, "{most} segments at once");
    assert!(distinct >= 50, "only {distinct} distinct segments in 60 s");
    server.shutdown();
}

/// With tokens, a player that cannot set headers uses `?token=` on the playlist and the
/// playlist's segment URIs carry it too; no token gets 401, another pipeline's token 403.
#[test]
fn with_tokens_the_playlist_hands_its_query_token_to_the_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "cam", CAM);
    let hash: String = sha2::Sha256::digest(b"view-cam")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tokens = format!(
        "[[token]]\nname = \"viewer\"\nsha256 = \"{hash}\"\nscopes = [\"view:cam\"]\n\n[[token]]\nname = \"other\"\nsha256 = \"{}\"\nscopes = [\"view:other\"]\n",
        sha2::Sha256::digest(b"view-other")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let auth = mediaweave::auth::Auth::load(None, Some(&tokens)).expect("tokens");
    let server = TestServer::start_with(dir.path(), auth);
    let url = playlist_url(&server.base, "cam");
    let with_token = format!("{url}?token=view-cam");
    wait_playlist(&with_token);
    let (_, playlist) = get_text(&with_token);
    assert!(playlist.contains(".ts?token=view-cam"), "{playlist}");
    // Names that are not the playlist or a segment of it find nothing, whatever they say.
    for path in [
        "/hls/cam/..%2F..%2F..%2Fetc%2Fpasswd",
        "/hls/cam/segment99999.ts",
        "/hls/cam/segment.ts",
        "/hls/cam/index.m3u8%00.ts",
        "/hls/nope/index.m3u8",
        "/hls/cam/..",
    ] {
        let (status, body) = get_text(&format!("{}{path}?token=view-cam", server.base));
        assert!(status == 404 || status == 403, "{path}: {status} {body}");
        assert!(!body.contains("root:"), "{path}: {body}");
    }
    assert_eq!(get(&url).status, 401);
    assert_eq!(get(&format!("{url}?token=view-other")).status, 403);
    let seen = probe_frames(&with_token, &[], 2);
    assert!(probed_frames(&seen, "video") >= 55, "{seen}");
    server.shutdown();
}

/// A published stream (an aiortc publisher that sends keyframes only when asked, with Opus)
/// is segmented as it arrives: its keyframes come on request, its Opus becomes AAC.
#[test]
fn a_published_stream_is_served_over_hls() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(
        dir.path(),
        "inbox",
        "[source]\nkind = \"webrtc\"\ncodec = \"h264\"\n\n[[output]]\nkind = \"hls\"\n",
    );
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "inbox", "playing");
    let publisher = aiortc_publish(&[
        "whip",
        &format!("{base}/whip/inbox"),
        "--h264",
        "--keyframes-on-request",
        "--seconds",
        "15",
        "--width",
        "320",
        "--height",
        "240",
    ]);
    let url = playlist_url(&base, "inbox");
    wait_playlist(&url);
    let seen = probe_frames(&url, &[], 3);
    assert!(probed_frames(&seen, "video") >= 30, "{seen}");
    assert_eq!(
        probed(&seen, "audio").map(|a| a["codec_name"].clone()),
        Some("aac".into()),
        "{seen}"
    );
    let (ok, _, stderr) = finish(publisher);
    assert!(ok, "{stderr}");
    server.shutdown();
}
