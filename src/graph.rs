//! Pictures of pipelines: GStreamer's DOT dump, rendered to SVG by Graphviz's `dot`
//! (Debian's `graphviz`, installed by `scripts/setup`).

use gst::prelude::*;
use std::io::Write;
use std::process::{Command, Stdio};

/// The pipeline as Graphviz DOT: elements, pads, caps, non-default properties and states.
pub fn dot(pipeline: &gst::Pipeline) -> String {
    let details = gst::DebugGraphDetails::MEDIA_TYPE
        | gst::DebugGraphDetails::CAPS_DETAILS
        | gst::DebugGraphDetails::NON_DEFAULT_PARAMS
        | gst::DebugGraphDetails::STATES;
    // Non-default properties include credentials (`user-pw`, passwords in URIs): a viewer
    // sees the graph without them.
    crate::redact::redact(&pipeline.debug_to_dot_data(details))
}

/// A pipeline with its readers' pipelines (see [`crate::hub`]): each reader's graph is a
/// cluster of the pipeline's, labelled with its name.
pub fn dot_with_readers(pipeline: &gst::Pipeline, readers: &[gst::Pipeline]) -> String {
    let main = dot(pipeline);
    let Some(end) = main.rfind('}') else {
        return main;
    };
    let mut out = main[..end].to_string();
    for (i, reader) in readers.iter().enumerate() {
        let graph = dot(reader);
        // The body of `digraph pipeline { ... }`; node names are unique across pipelines
        // (they carry the elements' addresses).
        let (Some(start), Some(stop)) = (graph.find('{'), graph.rfind('}')) else {
            continue;
        };
        out.push_str(&format!(
            "  subgraph cluster_reader_{i} {{\n  style=dashed;\n{}\n  }}\n",
            &graph[start + 1..stop]
        ));
    }
    out.push_str("}\n");
    out
}

/// Renders DOT to SVG with `dot -Tsvg`. Blocking; the error says what to install if `dot` is
/// missing.
pub fn svg(dot: &str) -> Result<String, String> {
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                "Graphviz's `dot` is not installed (scripts/setup installs it: apt-get install graphviz)".to_string()
            }
            _ => format!("cannot run Graphviz's `dot`: {e}"),
        })?;
    // Written from a thread so a large graph cannot fill both pipes and deadlock.
    let input = dot.to_string();
    let mut stdin = child.stdin.take().ok_or("no stdin for `dot`")?;
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("`dot` failed: {e}"))?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(format!(
            "`dot` could not render the graph: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("`dot` wrote no text: {e}"))
}
