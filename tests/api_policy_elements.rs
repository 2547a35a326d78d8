//! Every installed element factory with a property that names a path, a URI or a device is
//! refused in a description sent over the API (by default), whether the element is on the
//! allow-list (then the property is refused) or not (then the element is).

mod common;
use common::*;
use gst::prelude::*;

/// Property names that name a path, a URI or a device.
const PATHLIKE: &[&str] = &[
    "location", "uri", "path", "file", "dir", "template", "socket", "device",
];

/// (factory, property) for every installed factory whose elements have a writable string
/// property named like a path, a URI or a device.
fn candidates() -> Vec<(String, String)> {
    gst::init().expect("gst");
    let mut out = Vec::new();
    let factories = gst::Registry::get().features(gst::ElementFactory::static_type());
    for feature in factories {
        let Ok(factory) = feature.downcast::<gst::ElementFactory>() else {
            continue;
        };
        let Ok(element) = factory.create().build() else {
            continue;
        };
        let property = element.list_properties().iter().find_map(|p| {
            let writable = p.flags().contains(glib::ParamFlags::WRITABLE)
                && !p.flags().contains(glib::ParamFlags::CONSTRUCT_ONLY);
            let named = PATHLIKE.iter().any(|w| p.name().contains(w));
            (writable && named && p.value_type() == glib::Type::STRING)
                .then(|| p.name().to_string())
        });
        if let Some(property) = property {
            out.push((factory.name().to_string(), property));
        }
    }
    out.sort();
    out
}

#[test]
fn every_element_that_names_a_path_or_device_is_refused() {
    let candidates = candidates();
    // The core elements are always installed: the sweep is not empty.
    for core in ["filesrc", "filesink", "queue2"] {
        assert!(
            candidates.iter().any(|(f, _)| f == core),
            "{core} is among {candidates:?}"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path());
    let url = format!("{}/api/pipelines/probe", server.base);
    let mut accepted = Vec::new();
    let mut by_policy = 0;
    for (factory, property) in &candidates {
        let value = if property.contains("uri") {
            "file:///etc/passwd"
        } else if property.contains("device") {
            "/dev/mem"
        } else {
            "/etc/passwd"
        };
        let text = format!("autostart = false\nlaunch = \"{factory} {property}={value}\"\n");
        let r = put(&url, &text);
        let error = r.json["error"].as_str().unwrap_or_default();
        if r.status != 400 {
            accepted.push(format!(
                "{factory} {property}={value}: {} {}",
                r.status, r.json
            ));
            delete(&url);
            continue;
        }
        if error.contains("descriptions sent over the API") {
            by_policy += 1;
        }
    }
    assert!(accepted.is_empty(), "accepted over the API: {accepted:#?}");
    // Most are refused by the policy itself (the rest do not even parse on their own).
    assert!(
        by_policy * 2 > candidates.len(),
        "{by_policy} of {} refused by the policy",
        candidates.len()
    );
    assert!(!dir.path().join("probe.toml").exists());
}
