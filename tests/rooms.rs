//! Video rooms: several WHIP publishers at once in one room pipeline, each watched on its own
//! over WHEP (`/whep/{room}/{participant}`), listed with their names, with one chat for the
//! room; a full room refuses the next one with 503.

mod common;
use common::*;
use std::time::Duration;

const LOBBY: &str = "[source]\nkind = \"room\"\ncodec = \"h264\"\nmax_participants = 2\n\n[[output]]\nkind = \"webrtc\"\n";

/// An aiortc participant joining room `lobby` as `name`, drawing `colour` at 320x240.
fn join(base: &str, name: &str, colour: &str, seconds: u32, extra: &[&str]) -> std::process::Child {
    let url = format!("{base}/whip/lobby?name={name}");
    let seconds = seconds.to_string();
    let mut args = vec![
        "whip",
        &url,
        "--h264",
        "--colour",
        colour,
        "--seconds",
        &seconds,
        "--width",
        "320",
        "--height",
        "240",
    ];
    args.extend_from_slice(extra);
    aiortc_publish(&args)
}

/// The room's participants, once there are `n` of them, connected.
fn wait_participants(base: &str, n: usize) -> Vec<serde_json::Value> {
    wait_for(
        &format!("{n} connected participant(s)"),
        Duration::from_secs(30),
        || {
            let v = get(&format!("{base}/api/pipelines/lobby")).json;
            let list = v["participants"].as_array().cloned().unwrap_or_default();
            (list.len() == n && list.iter().all(|p| p["connected"] == true)).then_some(list)
        },
    )
}

/// The recordings, once there are `n` and none is being written.
fn finished_recordings(base: &str, n: usize) -> Vec<serde_json::Value> {
    wait_for("the recordings", Duration::from_secs(30), || {
        let list = get(&format!("{base}/api/recordings")).json;
        let list = list.as_array().cloned().unwrap_or_default();
        (list.len() == n && list.iter().all(|r| r["recording"] == false)).then_some(list)
    })
}

#[test]
fn participants_join_watch_each_other_chat_and_leave() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "lobby", LOBBY);
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "lobby", "playing");
    let events = collect_events(&base, |seen| {
        seen.iter().any(|e| e["type"] == "participant_left")
    });

    // Ana says two lines; Ben only listens.
    let ana = join(
        &base,
        "ana",
        "200,40,40",
        30,
        &[
            "--say-when",
            "2",
            "--say",
            "hello from ana",
            "--say",
            "second line",
        ],
    );
    let ben = join(&base, "ben", "40,40,200", 12, &["--chat"]);
    let list = wait_participants(&base, 2);
    let id_of = |name: &str| -> String {
        let p = list.iter().find(|p| p["name"] == name);
        let id = p.and_then(|p| p["id"].as_str()).unwrap_or_default();
        assert!(id.starts_with(&format!("{name}-")), "{list:?}");
        id.to_string()
    };
    let (a, b) = (id_of("ana"), id_of("ben"));
    assert!(list.iter().all(|p| p["codec"] == "h264"), "{list:?}");

    // The room is full: a third participant is refused, before its offer is even read.
    let offer = include_str!("fixtures/aiortc-offer.sdp");
    let r = post_sdp(&format!("{base}/whip/lobby?name=cy"), offer);
    assert_eq!(r.status, 503, "{}", r.json);
    assert!(
        r.json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("full"),
        "{}",
        r.json
    );
    // Nobody by that id: 404.
    let r = post_sdp(&format!("{base}/whep/lobby/nobody"), offer);
    assert_eq!(r.status, 404, "{}", r.json);

    // Each participant, watched on its own: its own colour. Ana over WHEP, Ben as the
    // producer `lobby/{id}` of the WebSocket protocol.
    let ws = base.replace("http://", "ws://") + "/ws";
    let (seen_a, seen_b) = std::thread::scope(|s| {
        let whep = format!("{base}/whep/lobby/{a}");
        let ta =
            s.spawn(move || aiortc_view(&["whep", &whep, "--frames", "40", "--timeout", "30"]));
        let producer = format!("lobby/{b}");
        let tb = s.spawn(move || {
            aiortc_view(&["ws", &ws, &producer, "--frames", "40", "--timeout", "30"])
        });
        (ta.join().expect("viewer"), tb.join().expect("viewer"))
    });
    assert!(seen_a["frames"].as_u64().unwrap_or(0) >= 40, "{seen_a}");
    assert!(seen_b["frames"].as_u64().unwrap_or(0) >= 40, "{seen_b}");
    assert_colour(&seen_a, [200, 40, 40]);
    assert_colour(&seen_b, [40, 40, 200]);

    // Ben leaves (DELETE of his location): he is gone from the list, with an event.
    let (ok, out, stderr) = finish(ben);
    assert!(ok, "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or("{}")).expect("the participant's report");
    assert_eq!(
        report["location"].as_str(),
        Some(format!("/whip/lobby/{b}").as_str()),
        "{report}"
    );
    // He heard Ana's lines, with her name, in order.
    let heard: Vec<(&str, &str)> = report["chat"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                l["from"].as_str().unwrap_or(""),
                l["text"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        heard,
        [("ana", "hello from ana"), ("ana", "second line")],
        "{report}"
    );
    // The two watching sessions are counted under the room in /metrics.
    let (_, metrics) = get_text(&format!("{base}/metrics"));
    let sessions = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mediaweave_webrtc_sessions_total{pipeline=\"lobby\"} "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(sessions.is_some_and(|n| n >= 2.0), "{metrics}");
    let left = wait_participants(&base, 1);
    assert_eq!(left[0]["id"].as_str(), Some(a.as_str()), "{left:?}");
    let events = events.join().expect("events");
    let joined: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["type"] == "participant_joined" && e["pipeline"] == "lobby")
        .collect();
    assert_eq!(joined.len(), 2, "{events:?}");
    assert!(
        events.iter().any(|e| e["type"] == "participant_left"
            && e["pipeline"] == "lobby"
            && e["fields"]["participant"] == b.as_str()),
        "{events:?}"
    );
    // Ben's place is free again; Ana leaves without a word (SIGTERM still DELETEs).
    let mut ana = ana;
    let _ = nix_term(&mut ana);
    let (ok, _, stderr) = finish(ana);
    assert!(ok, "{stderr}");
    wait_participants(&base, 0);
    server.shutdown();
}

fn nix_term(child: &mut std::process::Child) -> std::io::Result<()> {
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .map(|_| ())
}

/// A recorded call: each participant's segments are its stream as sent, under
/// `{recordings}/lobby/{participant}/`, with the room's chat as a subtitle track that
/// ffmpeg extracts with every line, its sender's name, in order. A hook on the room runs per
/// participant, its events naming the participant.
#[test]
fn a_recorded_call_keeps_each_participant_and_the_chat_as_subtitles() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(
        dir.path(),
        "lobby",
        &format!(
            "{LOBBY}\n[[output]]\nkind = \"record\"\nsegment = \"10m\"\n\n[[hook]]\nkind = \"stats\"\nevery = 10\n"
        ),
    );
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "lobby", "playing");
    let events = collect_events(&base, |seen| {
        let stats = hook_events(seen, "stats");
        let from = |p: &str| {
            stats
                .iter()
                .any(|e| e["pipeline"].as_str().is_some_and(|s| s.starts_with(p)))
        };
        from("lobby/ana-") && from("lobby/ben-")
    });
    let ana = join(
        &base,
        "ana",
        "200,40,40",
        10,
        &[
            "--say-when",
            "2",
            "--say-after",
            "1",
            "--say",
            "first from ana",
            "--say",
            "second from ana",
        ],
    );
    let ben = join(
        &base,
        "ben",
        "40,40,200",
        10,
        &[
            "--say-when",
            "2",
            "--say-after",
            "4",
            "--say",
            "third from ben",
        ],
    );
    let list = wait_participants(&base, 2);
    for p in &list {
        assert_eq!(p["hooks"][0]["name"], "stats", "{list:?}");
    }
    // The hook saw each participant's own picture: Ana's red is brighter than Ben's blue.
    let events = events.join().expect("events");
    let luma = |who: &str| -> f64 {
        hook_events(&events, "stats")
            .iter()
            .filter(|e| {
                e["pipeline"]
                    .as_str()
                    .is_some_and(|p| p.starts_with(&format!("lobby/{who}-")))
            })
            .rev()
            .find_map(|e| e["fields"]["fields"]["mean_luma"].as_f64())
            .unwrap_or_else(|| panic!("no stats event of {who}: {events:?}"))
    };
    let (red, blue) = (luma("ana"), luma("ben"));
    assert!(
        (red - 91.0).abs() < 12.0 && (blue - 66.0).abs() < 12.0,
        "ana {red}, ben {blue}"
    );
    for child in [ana, ben] {
        let (ok, _, stderr) = finish(child);
        assert!(ok, "{stderr}");
    }
    wait_participants(&base, 0);
    let recordings = finished_recordings(&base, 2);
    let lines = [
        "ana: first from ana",
        "ana: second from ana",
        "ben: third from ben",
    ];
    for p in &list {
        let id = p["id"].as_str().expect("id");
        let rec = recordings
            .iter()
            .find(|r| r["pipeline"] == format!("lobby/{id}").as_str())
            .unwrap_or_else(|| panic!("no recording of {id}: {recordings:?}"));
        let path = rec["path"].as_str().expect("path");
        assert!(
            path.contains(&format!("/lobby/{id}/")),
            "{path} is not in the participant's directory"
        );
        // Served at /recordings/lobby/{participant}/{file}.
        let (status, _) = get_text(&format!(
            "{base}/recordings/lobby/{id}/{}",
            rec["file"].as_str().expect("file")
        ));
        assert_eq!(status, 200);
        let probe = ffprobe(path, None).expect("ffprobe");
        let video = probe.video().expect("video");
        assert_eq!(
            (video.codec.as_str(), video.width, video.height),
            ("h264", 320, 240),
            "{probe:?}"
        );
        assert!(video.frames >= 100, "{probe:?}");
        assert!(
            probe
                .streams
                .iter()
                .any(|s| s.kind == "subtitle" && s.codec == "subrip"),
            "{probe:?}"
        );
        let out = run_limited(
            20,
            "ffmpeg",
            &["-v", "error", "-i", path, "-map", "0:s", "-f", "srt", "-"],
        );
        let srt = String::from_utf8_lossy(&out.stdout);
        let said: Vec<&str> = srt.lines().filter(|l| lines.contains(l)).collect();
        assert_eq!(said, lines, "{path}:\n{srt}");
    }
    server.shutdown();
}

/// Two headless Chromium pages join `/room/lobby` (the shipped room, recorded) with the fake
/// camera and microphone: each decodes the other's video and hears its audio, a chat line
/// typed in one shows in the other with the name, the front page links the room with its
/// count, and a leave drops the tile at once. Each page's recording holds its video and audio
/// as sent and the chat line as a subtitle.
#[test]
fn two_browser_pages_call_each_other_in_a_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(dir.path(), "lobby", include_str!("../pipelines/lobby.toml"));
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "lobby", "playing");
    let call = chromium(&base, "lobby", "room");
    assert!(call.get("error").is_none(), "{call}");
    for (who, other) in [("ana", "ben"), ("ben", "ana")] {
        let tile = &call["seen"][who];
        assert_eq!(tile["name"], other, "{call}");
        assert!(tile["framesDecoded"].as_u64().unwrap_or(0) >= 60, "{call}");
        // And hears the other's microphone.
        assert!(tile["audioSamples"].as_u64().unwrap_or(0) > 0, "{call}");
    }
    assert_eq!(call["heard"]["from"], "ana", "{call}");
    assert_eq!(
        call["linkText"].as_str(),
        Some("join the room (2 participants)"),
        "{call}"
    );
    wait_participants(&base, 0);
    let recordings = finished_recordings(&base, 2);
    for rec in &recordings {
        let path = rec["path"].as_str().expect("path");
        let probe = ffprobe(path, None).expect("ffprobe");
        assert_eq!(
            probe.video().map(|v| v.codec.as_str()),
            Some("h264"),
            "{probe:?}"
        );
        assert_eq!(
            probe.audio().map(|a| a.codec.as_str()),
            Some("opus"),
            "{probe:?}"
        );
        let out = run_limited(
            20,
            "ffmpeg",
            &["-v", "error", "-i", path, "-map", "0:s", "-f", "srt", "-"],
        );
        let srt = String::from_utf8_lossy(&out.stdout);
        assert!(srt.contains("ana: hello from ana's page"), "{path}:\n{srt}");
    }
    server.shutdown();
}
