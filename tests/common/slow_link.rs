//! A viewer's slow link: a network namespace of the test's own, reached over a veth pair
//! whose egress toward it is shaped with `tbf` (the suite runs in a namespace of its own).

use std::process::Command;

/// The namespace and link, removed again when dropped.
pub struct SlowLink {
    pub ns: String,
    pub veth: String,
    /// The service's address on the link, and the namespace's.
    pub host: String,
    pub viewer: String,
}

/// Links made by this test binary so far: each gets names and a subnet of its own.
static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Runs `program` with `args`, which must succeed.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip(args: &[&str]) {
    run("ip", args);
}

impl SlowLink {
    /// A namespace reached over a veth pair whose egress toward it is shaped to `rate`.
    pub fn new(rate: &str) -> SlowLink {
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let (ns, veth, peer) = (
            format!("mwslow{id}"),
            format!("mws{id}a"),
            format!("mws{id}b"),
        );
        ip(&["netns", "add", &ns]);
        let subnet = 7 + n % 200;
        let link = SlowLink {
            ns,
            veth,
            host: format!("10.201.{subnet}.1"),
            viewer: format!("10.201.{subnet}.2"),
        };
        ip(&[
            "link", "add", &link.veth, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &link.ns]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", link.host),
            "dev",
            &link.veth,
        ]);
        ip(&["link", "set", &link.veth, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &link.ns, "ip"];
            all.extend(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{}/24", link.viewer), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        link.shape(rate);
        link
    }

    /// Limits the link toward the namespace to `rate` (`tbf`, e.g. "600kbit").
    pub fn shape(&self, rate: &str) {
        run(
            "tc",
            &[
                "qdisc", "add", "dev", &self.veth, "root", "tbf", "rate", rate, "burst", "20kb",
                "latency", "100ms",
            ],
        );
    }

    /// Takes the limit away.
    pub fn lift(&self) {
        run("tc", &["qdisc", "del", "dev", &self.veth, "root"]);
    }

    /// (bytes sent, packets sent, packets dropped) by the shaper so far.
    pub fn shaper(&self) -> (u64, u64, u64) {
        let out = Command::new("tc")
            .args(["-s", "qdisc", "show", "dev", &self.veth])
            .output()
            .expect("tc -s");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        // " Sent 1258731 bytes 1517 pkt (dropped 38261, overlimits ..."
        let words: Vec<&str> = text.split_whitespace().collect();
        let after = |w: &str| -> u64 {
            words
                .iter()
                .position(|x| *x == w)
                .and_then(|i| words.get(i + 1))
                .map(|v| v.trim_end_matches(',').parse().unwrap_or(0))
                .unwrap_or(0)
        };
        let bytes = after("Sent");
        let packets = words
            .iter()
            .position(|x| *x == "bytes")
            .and_then(|i| words.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        (bytes, packets, after("(dropped"))
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}
