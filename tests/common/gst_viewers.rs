//! GStreamer webrtcbin viewers of one stream in one process (`tests/peers/gst_viewers.py`),
//! driven by commands on its stdin, each answered with a JSON line.

use std::io::{BufRead, BufReader, Lines, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

pub struct GstViewers {
    child: Child,
    to: ChildStdin,
    from: Lines<BufReader<ChildStdout>>,
}

impl GstViewers {
    /// Viewers that will watch `url` over WHEP (none yet: `add N`).
    pub fn whep(url: &str) -> GstViewers {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/gst_viewers.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .args(["whep", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the GStreamer viewers");
        let to = child.stdin.take().expect("stdin");
        let from = BufReader::new(child.stdout.take().expect("stdout")).lines();
        GstViewers { child, to, from }
    }

    /// Sends `cmd` (`add N`, `measure S`, `keyframe S`) and returns its answer.
    pub fn ask(&mut self, cmd: &str) -> serde_json::Value {
        writeln!(self.to, "{cmd}").expect("command");
        let line = self.from.next().and_then(Result::ok).unwrap_or_default();
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("viewers, on {cmd}: {line}"))
    }
}

impl Drop for GstViewers {
    fn drop(&mut self) {
        let _ = writeln!(self.to, "quit");
        let _ = self.child.wait();
    }
}
