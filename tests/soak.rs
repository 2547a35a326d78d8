//! Churn: viewer sessions opened and dropped many times — ended cleanly over WHEP, abandoned
//! (an offer whose peer never does ICE), refused (bad offers), and real aiortc viewers killed
//! mid-stream (every 20th cycle; `MEDIAWEAVE_SOAK_KILL_EVERY=N` changes it, 0 turns it off),
//! noticed by the peer timeout — and participants joining a room and leaving it (cleanly, or
//! abandoning their join) — and afterwards nothing is left: no participant, no session, no per-peer
//! pipeline alive (weak references), no GStreamer object created during the churn (GStreamer's
//! leaks tracer, watching every GstObject), file descriptors and threads back to their
//! baseline, and RSS grown by less than 10 MB; no GLib critical on the way.
//! `MEDIAWEAVE_SOAK_CYCLES` sets the number of cycles (200 in the suite; `scripts/soak` runs
//! 1000 on a release build and prints the figures).

mod common;
use common::*;
use gst::prelude::*;
use std::time::{Duration, Instant};

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Per-peer pipelines GStreamer has not freed (a weak reference on each).
fn live_webrtcbins() -> usize {
    mediaweave::webrtc::peer::live_peer_pipelines()
}

/// Polls `f` until Ok, or returns its last Err after `timeout`.
fn wait_for_or<E>(timeout: Duration, mut f: impl FnMut() -> Result<(), E>) -> Result<(), E> {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The leaks tracer (GST_TRACERS, set by the test).
fn leaks_tracer() -> gst::Tracer {
    gst::active_tracers()
        .into_iter()
        .find(|t| t.type_().name() == "GstLeaksTracer")
        .expect("the leaks tracer is active")
}

/// GStreamer objects created since the last checkpoint that are still alive, by type, as the
/// leaks tracer saw them being created and destroyed. (Its `get-live-objects` is not used: in
/// GStreamer 1.22 it takes over references it does not own, which unrefs live objects.)
fn created_and_alive(tracer: &gst::Tracer) -> std::collections::BTreeMap<String, usize> {
    use std::collections::{BTreeMap, HashMap};
    let checkpoint = tracer.emit_by_name::<gst::Structure>("activity-get-checkpoint", &[]);
    // Per address: created minus destroyed (an address can be reused).
    let mut balance: HashMap<String, (String, i64)> = HashMap::new();
    for (list, delta) in [("objects-created-list", 1), ("objects-removed-list", -1)] {
        let list = checkpoint.get::<gst::List>(list).expect("checkpoint list");
        for entry in list.iter() {
            let Ok(s) = entry.get::<gst::Structure>() else {
                continue;
            };
            let address = s.get::<String>("address").unwrap_or_default();
            let type_name = s.get::<String>("type-name").unwrap_or_default();
            let e = balance.entry(address).or_insert((type_name, 0));
            e.1 += delta;
        }
    }
    let mut alive = BTreeMap::new();
    for (type_name, n) in balance.into_values().filter(|(_, n)| *n > 0) {
        *alive.entry(type_name).or_insert(0) += n as usize;
    }
    alive
}

struct Figures {
    rss_kb: u64,
    fds: usize,
    threads: usize,
}

fn measure() -> Figures {
    // Freed memory the allocator keeps is not a leak: give it back first.
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: glibc's malloc_trim only releases free heap memory.
    unsafe {
        malloc_trim(0);
    }
    Figures {
        rss_kb: rss_kb(),
        fds: count("/proc/self/fd"),
        threads: count("/proc/self/task"),
    }
}

#[test]
fn sessions_churn_without_leaking() {
    // SAFETY: set before GStreamer starts and before this test starts any thread that reads
    // the environment; this file has no other test.
    unsafe {
        std::env::set_var(
            "GST_TRACERS",
            "leaks(filters=\"GstObject\",stack-traces-flags=none)",
        );
    }
    // A GLib critical (a GStreamer assertion failing, an object unreffed twice) ends the run.
    glib::log_set_always_fatal(glib::LogLevels::LEVEL_CRITICAL);
    let cycles: usize = std::env::var("MEDIAWEAVE_SOAK_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().expect("tempdir");
    write_pipeline(
        dir.path(),
        "cam",
        "[source]\nkind = \"test\"\nwidth = 320\nheight = 240\naudio = false\n\n[[output]]\nkind = \"webrtc\"\nmax_viewers = 1000\n",
    );
    write_pipeline(
        dir.path(),
        "lobby",
        "[source]\nkind = \"room\"\nmax_participants = 64\n\n[[output]]\nkind = \"webrtc\"\n",
    );
    let server = TestServer::start_custom(dir.path(), |c| {
        // Abandoned sessions end after this, so the run does not wait long for them.
        c.webrtc.connect_timeout = Duration::from_secs(3);
    });
    let base = server.base.clone();
    wait_state(&base, "cam", "playing");
    wait_state(&base, "lobby", "playing");
    let offer = include_str!("fixtures/aiortc-offer.sdp");
    // The same peer, sending: a participant's join (it never does ICE).
    let publish_offer = offer.replace("a=recvonly", "a=sendonly");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let whep = |sdp: &str| {
        let r = agent
            .post(&format!("{base}/whep/cam"))
            .header("Content-Type", "application/sdp")
            .send(sdp)
            .expect("POST");
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (r.status().as_u16(), location)
    };
    let join = || {
        let r = agent
            .post(&format!("{base}/whip/lobby?name=soak"))
            .header("Content-Type", "application/sdp")
            .send(publish_offer.as_str())
            .expect("POST");
        assert_eq!(r.status().as_u16(), 201);
        r.headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .expect("a participant resource")
    };
    let drained = |what: &str| {
        let t = Instant::now();
        let empty = wait_for_or(Duration::from_secs(60), || {
            let p = get(&format!("{base}/api/pipelines/lobby")).json["participants"].clone();
            p.as_array()
                .is_some_and(|a| a.is_empty())
                .then_some(())
                .ok_or(p)
        });
        if let Err(participants) = empty {
            panic!("participants left after waiting for {what}: {participants}");
        }
        // Abandoned sessions end after the 3 s connect timeout, killed viewers after the
        // default 15 s peer timeout.
        let left = wait_for_or(Duration::from_secs(60), || {
            let v = get(&format!("{base}/api/pipelines/cam")).json["viewers"].clone();
            v.as_array()
                .is_some_and(|a| a.is_empty())
                .then_some(())
                .ok_or(v)
        });
        if let Err(viewers) = left {
            panic!("sessions left after waiting for {what}: {viewers}");
        }
        println!("soak: {what}: {:.1} s", t.elapsed().as_secs_f64());
        wait_for(
            "every per-peer pipeline freed",
            Duration::from_secs(30),
            || (live_webrtcbins() == 0).then_some(()),
        );
    };

    // Killed viewers: real peers that vanish without a word, noticed only by their silence.
    let kill_every: Option<usize> = std::env::var("MEDIAWEAVE_SOAK_KILL_EVERY")
        .ok()
        .and_then(|k| k.parse().ok())
        .or(Some(20))
        .filter(|k| *k > 0);
    // One round of churn; returns (clean, abandoned, refused, killed).
    let churn_round = |n: usize| {
        let (mut clean, mut abandoned, mut refused, mut killed) = (0, 0, 0, 0);
        for i in 0..n {
            // A room's participants: joins that leave (DELETE), joins that are abandoned.
            match i % 10 {
                1 | 6 => {
                    let l = join();
                    let status = agent
                        .delete(&format!("{base}{l}"))
                        .call()
                        .expect("DELETE")
                        .status()
                        .as_u16();
                    assert_eq!(status, 200);
                }
                3 => {
                    join();
                }
                _ => {}
            }
            match i % 10 {
                // Killed mid-stream: a real viewer that vanishes without a word.
                0 if kill_every.is_some_and(|k| i % k == 0) => {
                    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("tests/peers/aiortc_viewer.py");
                    let mut viewer = std::process::Command::new(venv_python())
                        .arg(script)
                        .args(["whep", &format!("{base}/whep/cam"), "--frames", "100000"])
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .spawn()
                        .expect("viewer");
                    wait_for("the viewer to connect", Duration::from_secs(30), || {
                        let v = get(&format!("{base}/api/pipelines/cam")).json;
                        v["viewers"]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|s| s["connected"] == true))
                            .then_some(())
                    });
                    let _ = viewer.kill();
                    let _ = viewer.wait();
                    killed += 1;
                }
                0..=4 => {
                    let (status, location) = whep(offer);
                    assert_eq!(status, 201);
                    let l = location.expect("a session resource");
                    assert_eq!(
                        agent
                            .delete(&format!("{base}{l}"))
                            .call()
                            .expect("DELETE")
                            .status()
                            .as_u16(),
                        200
                    );
                    clean += 1;
                }
                5..=7 => {
                    assert_eq!(whep(offer).0, 201);
                    abandoned += 1;
                }
                _ => {
                    assert_eq!(whep("v=0\r\nnot an offer").0, 400);
                    refused += 1;
                }
            }
        }

        (clean, abandoned, refused, killed)
    };
    // Warm up with the same mix, so one-time allocations and the high-water mark of the
    // concurrent sessions are in the baseline; growth after that is what leaks.
    churn_round(100);
    drained("the warm-up sessions to end");
    let before = measure();
    let tracer = leaks_tracer();
    tracer.emit_by_name::<()>("activity-start-tracking", &[]);
    let started = Instant::now();
    let (clean, abandoned, refused, killed) = churn_round(cycles);
    let churn = started.elapsed();
    drained("every session to end");
    std::thread::sleep(Duration::from_secs(1));
    // First the checkpoint: it also frees what the tracer logged during the churn.
    let left = created_and_alive(&tracer);
    println!("soak: GStreamer objects created during the churn and alive after it: {left:?}");
    let after = measure();
    let grown_mb = (after.rss_kb as f64 - before.rss_kb as f64) / 1024.0;
    println!(
        "soak: {cycles} cycles in {:.1} s ({clean} clean, {abandoned} abandoned, {refused} refused, {killed} killed); RSS {:.1} → {:.1} MB ({grown_mb:+.1} MB), fds {} → {}, threads {} → {}, peer pipelines alive: {}",
        churn.as_secs_f64(),
        before.rss_kb as f64 / 1024.0,
        after.rss_kb as f64 / 1024.0,
        before.fds,
        after.fds,
        before.threads,
        after.threads,
        live_webrtcbins()
    );
    assert!(grown_mb < 10.0, "RSS grew {grown_mb:.1} MB");
    assert!(
        after.fds <= before.fds + 4,
        "fds {} → {}",
        before.fds,
        after.fds
    );
    assert!(
        after.threads <= before.threads + 4,
        "threads {} → {}",
        before.threads,
        after.threads
    );
    // Still serving.
    let seen = aiortc_view(&["whep", &format!("{base}/whep/cam"), "--frames", "10"]);
    assert!(seen["frames"].as_u64().unwrap_or(0) >= 10, "{seen}");
}
