//! Runtime management over HTTP: a pipeline created by `PUT` runs (a TCP client decodes its
//! frames), an invalid `PUT` is refused with FILE:LINE:COL diagnostics while the old pipeline
//! keeps running, `GET .../description` returns the file, a restart of the service keeps `PUT`
//! pipelines, and `DELETE` stops the pipeline and removes its file.

mod common;
use common::*;
use std::time::Duration;

fn tcp_pipeline(port: u16, pattern: &str) -> String {
    format!(
        "# made over HTTP\n[source]\nkind = \"test\"\nwidth = 320\nheight = 240\naudio = false\npattern = \"{pattern}\"\n\n[[output]]\nkind = \"tcp\"\nport = {port}\n"
    )
}

#[test]
fn put_delete_and_persist_pipelines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let text = tcp_pipeline(port, "ball");
    let since;
    {
        let server = TestServer::start(dir.path());
        let base = server.base.clone();

        let created = put(&format!("{base}/api/pipelines/made"), &text);
        assert_eq!(created.status, 201, "{}", created.json);
        assert_eq!(created.json["result"], "created");
        let playing = wait_state(&base, "made", "playing");
        let frames = gst_decode_tcp(port, 10).expect("decode");
        assert!(frames.len() >= 10, "frames from the PUT pipeline");
        assert_eq!(frames[0], (320, 240));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("made.toml")).expect("saved"),
            text
        );
        let (code, body) = get_text(&format!("{base}/api/pipelines/made/description"));
        assert_eq!((code, body.as_str()), (200, text.as_str()));

        // The same content again changes nothing.
        let same = put(&format!("{base}/api/pipelines/made"), &text);
        assert_eq!(same.status, 200);
        assert_eq!(same.json["result"], "unchanged");
        assert_eq!(same.json["since"], playing["since"], "not restarted");

        // Invalid: 400 with the place of each problem; what runs keeps running.
        let bad = put(
            &format!("{base}/api/pipelines/made"),
            "[source]\nkind = \"test\"\nwidht = 320\n\n[[output]]\nkind = \"tcp\"\nport = 5000\n",
        );
        assert_eq!(bad.status, 400, "{}", bad.json);
        let error = bad.json["error"].as_str().expect("error");
        assert!(
            error.contains("made.toml:3:1: unknown key `widht`"),
            "{error}"
        );
        assert_eq!(bad.json["diagnostics"][0]["line"], 3);
        assert_eq!(bad.json["diagnostics"][0]["col"], 1);
        let still = get(&format!("{base}/api/pipelines/made")).json;
        assert_eq!(still["state"], "playing");
        assert_eq!(still["since"], playing["since"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("made.toml")).expect("kept"),
            text,
            "the invalid text is not saved"
        );
        assert!(gst_decode_tcp(port, 5).expect("decode").len() >= 5);

        // Bad names and bodies are refused with a reason.
        let r = put(&format!("{base}/api/pipelines/..%2Fescape"), &text);
        assert_eq!(r.status, 400, "{}", r.json);
        assert!(
            r.json["error"]
                .as_str()
                .unwrap_or_default()
                .contains("not a valid pipeline name"),
            "{}",
            r.json
        );
        since = playing["since"].clone();
    }

    // A new service on the same directory runs the PUT pipeline again.
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    let again = wait_state(&base, "made", "playing");
    assert_ne!(again["since"], since);
    assert!(gst_decode_tcp(port, 5).expect("decode").len() >= 5);

    // DELETE stops it and removes the file.
    let gone = delete(&format!("{base}/api/pipelines/made"));
    assert_eq!(gone.status, 204);
    assert!(!dir.path().join("made.toml").exists());
    assert_eq!(get(&format!("{base}/api/pipelines/made")).status, 404);
    wait_for("the port to close", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });
    let r = delete(&format!("{base}/api/pipelines/made"));
    assert_eq!(r.status, 404);
    assert_eq!(r.json["error"], "no pipeline named `made`");

    // The API describes itself; a wrong method gets a JSON reason too.
    let doc = get(&format!("{base}/api/openapi.json")).json;
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/api/pipelines/{name}",
        "/api/pipelines/{name}/description",
        "/api/pipelines/{name}/elements/{element}/properties/{prop}",
        "/api/pipelines/{name}/graph.svg",
        "/metrics",
        "/api/events",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    assert!(doc["paths"]["/api/pipelines/{name}"]["put"].is_object());
    let r = put(&format!("{base}/api/pipelines/made/description"), "x");
    assert_eq!(r.status, 405);
    assert_eq!(
        r.json["error"],
        "PUT is not supported on /api/pipelines/made/description"
    );
}

#[test]
fn descriptions_from_the_api_may_not_touch_files_or_run_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("written.ts");
    let writes_file = format!(
        "launch = \"videotestsrc is-live=true ! x264enc ! mpegtsmux ! filesink location={}\"\n",
        out.display()
    );
    // The operator's own file may do it.
    write_pipeline(dir.path(), "operator", &writes_file);
    let server = TestServer::start(dir.path());
    let base = server.base.clone();
    wait_state(&base, "operator", "playing");

    let refused = [
        (writes_file.as_str(), "viaapi.toml:1:"),
        (
            "[source]\nkind = \"file\"\npath = \"/etc/hostname\"\n\n[[output]]\nkind = \"tcp\"\nport = 5999\n",
            "viaapi.toml:3:8: a `file` source reads a path: descriptions sent over the API may not name paths or non-network URIs on the server",
        ),
        (
            "[source]\nkind = \"test\"\n\n[[output]]\nkind = \"file\"\npath = \"/tmp/x.mkv\"\n",
            "viaapi.toml:6:8: a `file` output writes a path",
        ),
        (
            "[source]\nkind = \"uri\"\nuri = \"FILE:///etc/passwd\"\n\n[[output]]\nkind = \"tcp\"\nport = 5999\n",
            "viaapi.toml:3:7: this URI is not a network URI",
        ),
        (
            "[source]\nkind = \"uri\"\nuri = \"gio:/etc/passwd\"\n\n[[output]]\nkind = \"tcp\"\nport = 5999\n",
            "viaapi.toml:3:7: this URI is not a network URI",
        ),
        (
            "[source]\nkind = \"camera\"\ndevice = \"/etc/passwd\"\n\n[[output]]\nkind = \"tcp\"\nport = 5999\n",
            "viaapi.toml:3:10: a `camera` source opens a device",
        ),
        // Raw lines: every element of the graph is on the allow-list, and no property names
        // a path or a device, however it is spelled.
        (
            "launch = \"urisourcebin uri=file:///etc/passwd ! tcpclientsink host=127.0.0.1 port=5981\"\n",
            "viaapi.toml:1:11: element `urisourcebin` is not on the list",
        ),
        (
            "launch = \"uridecodebin uri=file:///etc/passwd ! fakesink\"\n",
            "element `uridecodebin` is not on the list",
        ),
        (
            "launch = \"playbin uri=file:///etc/passwd\"\n",
            "element `playbin` is not on the list",
        ),
        (
            "launch = \"file:///etc/passwd ! tcpclientsink port=5981\"\n",
            "viaapi.toml:1:11: `file:///etc/passwd` makes an element from a URI",
        ),
        (
            "launch = \"videotestsrc ! x264enc ! h264parse ! hlssink2 location=/tmp/s%05d.ts playlist-location=/tmp/p.m3u8\"\n",
            "element `hlssink2` is not on the list",
        ),
        (
            "launch = \"videotestsrc ! queue ! fakesink ( filesrc location=/etc/passwd ! tcpclientsink port=5981 )\"\n",
            "element `filesrc` is not on the list",
        ),
        (
            "launch = \"videotestsrc ! x264enc option-string=dump-yuv=/tmp/x.yuv ! fakesink\"\n",
            "viaapi.toml:1:34: property `option-string` of `x264enc` reads or writes files",
        ),
        (
            "launch = \"videotestsrc ! x264enc ! mp4mux moov-recovery-file=/tmp/r ! fakesink\"\n",
            "property `moov-recovery-file` of `mp4mux` reads or writes files",
        ),
        (
            "launch = \"souphttpsrc location=file:///etc/passwd ! fakesink\"\n",
            "property `location` of `souphttpsrc` reads or writes files",
        ),
        // A structure can carry launch lines (rtpbin builds its FEC encoders from them).
        (
            r#"launch = 'rtpbin name=r fec-encoders=fec,0="filesink\ location\=/tmp/pwned" videotestsrc ! fakesink'"#,
            "property `fec-encoders` of `rtpbin` takes a GstStructure",
        ),
        // Spellings that hide an element from a simple reading of the line.
        (
            "launch = 'videotestsrc ! video/x-raw,a=1:v4l2src'\n",
            "viaapi.toml:1:42: element `v4l2src` is not on the list",
        ),
        (
            "launch = 'videotestsrc ! fakesink v4l2src@preset=x'\n",
            "element `v4l2src` is not on the list",
        ),
        (
            r#"launch = 'videotestsrc ! fakesink "v4l2src device=/dev/video0"'"#,
            "cannot be checked",
        ),
        (
            "launch = 'videotestsrc ! fakesink hlssink2::splitmuxsink::max-files=1'\n",
            "sets a property of a bin's child",
        ),
        (
            "[source]\nkind = \"test\"\n\n[[hook]]\nkind = \"process\"\ncommand = [\"sh\", \"-c\", \"id\"]\n",
            "viaapi.toml:6:11: a `process` hook runs a command on the server",
        ),
    ];
    for (text, expected) in refused {
        let r = put(&format!("{base}/api/pipelines/viaapi"), text);
        assert_eq!(r.status, 400, "{}", r.json);
        let error = r.json["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{error}");
        assert!(!dir.path().join("viaapi.toml").exists(), "nothing saved");
    }
    let r = put(&format!("{base}/api/pipelines/viaapi"), &writes_file);
    assert!(
        r.json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("element `filesink` is not on the list of elements descriptions sent over the API may use"),
        "{}",
        r.json
    );
    // Harmless raw lines are fine, network URIs too.
    let ok = put(
        &format!("{base}/api/pipelines/viaapi"),
        "launch = \"videotestsrc is-live=true ! x264enc tune=zerolatency ! h264parse ! mpegtsmux ! tcpclientsink host=127.0.0.1 port=5981 sync=false\"\n",
    );
    assert_eq!(ok.status, 201, "{}", ok.json);
    for line in [
        "rtspsrc location=rtsp://127.0.0.1:8554/x ! fakesink",
        "videotestsrc ! video/x-raw,format=(string)I420,framerate=(fraction)30/1 ! fakesink",
        "videotestsrc ! video/x-raw,width=(int)320 ! capsfilter caps=video/x-raw ! fakesink",
    ] {
        let ok = put(
            &format!("{base}/api/pipelines/viaapi"),
            &format!("autostart = false\nlaunch = '{line}'\n"),
        );
        assert_eq!(ok.status, 200, "{line}: {}", ok.json);
    }
    // A network URI is fine.
    let ok = put(
        &format!("{base}/api/pipelines/viaapi"),
        "autostart = false\n[source]\nkind = \"uri\"\nuri = \"rtsp://cam:hunter2@127.0.0.1:1/x\"\n\n[[output]]\nkind = \"tcp\"\nport = 5999\n",
    );
    assert_eq!(ok.status, 200, "{}", ok.json);
    drop(server);

    // An operator can allow an element: its path still needs --api-allow-paths.
    let server =
        TestServer::start_custom(dir.path(), |c| c.supervisor.api_policy.allow("filesink"));
    let r = put(
        &format!("{}/api/pipelines/viaapi", server.base),
        &writes_file,
    );
    assert_eq!(r.status, 400, "{}", r.json);
    assert!(
        r.json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("property `location` of `filesink` reads or writes files"),
        "{}",
        r.json
    );
    drop(server);
    let server = TestServer::start_custom(dir.path(), |c| {
        c.supervisor.api_policy.allow("filesink");
        c.supervisor.api_policy.allow_paths = true;
    });
    let r = put(
        &format!("{}/api/pipelines/viaapi", server.base),
        &writes_file,
    );
    assert_eq!(r.status, 200, "{}", r.json);
    drop(server);

    // Allowing a bin does not allow what it holds: hlssink2 writes through its children.
    let server =
        TestServer::start_custom(dir.path(), |c| c.supervisor.api_policy.allow("hlssink2"));
    let r = put(
        &format!("{}/api/pipelines/hls", server.base),
        "launch = \"videotestsrc ! x264enc ! h264parse ! hlssink2\"\n",
    );
    assert_eq!(r.status, 400, "{}", r.json);
    let error = r.json["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(
            "hls.toml:1:48: element `splitmuxsink` (inside `hlssink2`) is not on the list"
        ),
        "{error}"
    );
}
