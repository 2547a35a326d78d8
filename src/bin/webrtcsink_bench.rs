//! The benchmark's comparison, not part of the service: runs a gst-launch line with the
//! gst-plugins-rs `webrtc` plugin (webrtcsink, whepserversink) and `rtp` plugin (rtpgccbwe, its
//! congestion control) registered in-process, until stdin closes or the pipeline fails.
//!
//!   webrtcsink-bench 'videotestsrc is-live=true ! ... ! whepserversink signaller::host-addr=http://0.0.0.0:9090'
//!
//! ICE_ADDRESSES (comma-separated, default 127.0.0.1): the addresses each consumer's ICE agent
//! gathers on (libnice leaves loopback out by itself).

use gst::prelude::*;
use std::io::Read;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("webrtcsink-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let launch = std::env::args()
        .nth(1)
        .ok_or("usage: webrtcsink-bench LAUNCH-LINE")?;
    gst::init().map_err(|e| e.to_string())?;
    gstrswebrtc::plugin_register_static().map_err(|e| e.to_string())?;
    gstrsrtp::plugin_register_static().map_err(|e| e.to_string())?;
    let pipeline = gst::parse::launch(&launch).map_err(|e| format!("the launch line: {e}"))?;
    no_stun(&pipeline);
    gather_on(&pipeline);
    let bus = pipeline.bus().ok_or("the pipeline has no bus")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("the pipeline did not start: {e}"))?;
    // Ends when whoever started us closes our stdin (or goes away).
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Error(e) => {
                let _ = pipeline.set_state(gst::State::Null);
                return Err(format!("{}: {}", e.error(), e.debug().unwrap_or_default()));
            }
            gst::MessageView::Eos(_) => break,
            _ => {}
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    Ok(())
}

/// No STUN server (a launch line can only set the string "NULL"): the benchmark's peers are
/// on this machine, and a STUN lookup would hold up ICE gathering, which the WHEP answer waits for.
fn no_stun(pipeline: &gst::Element) {
    let Some(bin) = pipeline.downcast_ref::<gst::Bin>() else {
        return;
    };
    for element in bin.iterate_recurse().into_iter().flatten() {
        if element.find_property("stun-server").is_some() {
            element.set_property("stun-server", None::<String>);
        }
        if element.find_property("signaller").is_some() {
            let signaller = element.property::<glib::Object>("signaller");
            if signaller.find_property("stun-server").is_some() {
                signaller.set_property("stun-server", None::<String>);
            }
        }
    }
}

/// Each consumer's ICE agent gathers on ICE_ADDRESSES.
fn gather_on(pipeline: &gst::Element) {
    let Some(bin) = pipeline.downcast_ref::<gst::Bin>() else {
        return;
    };
    let addresses: Vec<String> = std::env::var("ICE_ADDRESSES")
        .unwrap_or_else(|_| "127.0.0.1".into())
        .split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    for element in bin.iterate_recurse().into_iter().flatten() {
        if element.has_property("signaller") {
            let addresses = addresses.clone();
            element.connect("consumer-added", false, move |args| {
                let webrtcbin = args.get(2).and_then(|v| v.get::<gst::Element>().ok())?;
                let agent = webrtcbin.property::<glib::Object>("ice-agent");
                for a in &addresses {
                    agent.emit_by_name::<bool>("add-local-ip-address", &[a]);
                }
                None
            });
        }
    }
}
