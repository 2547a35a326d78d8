//! What the GStreamer registry has, and what to tell a user about an element it lacks.

use std::collections::BTreeSet;
use std::sync::OnceLock;

/// `package: element, element, ...` lines generated from Debian's package metadata
/// (see scripts/gen-element-packages).
const ELEMENT_PACKAGES: &str = include_str!("element_packages.txt");

/// The Debian package that ships `element`, if the table knows it.
pub fn debian_package(element: &str) -> Option<&'static str> {
    ELEMENT_PACKAGES
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .find(|(_, els)| els.split(',').any(|e| e.trim() == element))
        .map(|(pkg, _)| pkg.trim())
}

/// Every element name the Debian table knows, installed or not.
fn known_names() -> impl Iterator<Item = &'static str> {
    ELEMENT_PACKAGES
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .flat_map(|(_, els)| els.split(',').map(str::trim))
}

/// Names of the element factories installed on this machine.
pub fn installed_names() -> &'static BTreeSet<String> {
    static NAMES: OnceLock<BTreeSet<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        use gst::prelude::*;
        gst::Registry::get()
            .features(gst::ElementFactory::static_type())
            .into_iter()
            .map(|f| f.name().to_string())
            .collect()
    })
}

pub fn is_installed(element: &str) -> bool {
    gst::ElementFactory::find(element).is_some()
}

/// When element `factory`'s source pads cannot produce `caps_name` (e.g. `video/x-h264`),
/// the media types they do produce.
pub fn mismatched_output(factory: &str, caps_name: &str) -> Option<String> {
    let factory = gst::ElementFactory::find(factory)?;
    let mut produces = Vec::new();
    for template in factory.static_pad_templates() {
        if template.direction() != gst::PadDirection::Src {
            continue;
        }
        let caps = template.caps();
        for s in caps.iter() {
            if s.name() == caps_name {
                return None;
            }
            produces.push(s.name().to_string());
        }
    }
    Some(if produces.is_empty() {
        "nothing".into()
    } else {
        produces.join(", ")
    })
}

/// The closest installed or known element name, when it is close enough to be a typo.
pub fn nearest(name: &str) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    let candidates = installed_names()
        .iter()
        .map(String::as_str)
        .chain(known_names());
    for cand in candidates {
        let d = strsim::damerau_levenshtein(name, cand);
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, cand));
        }
    }
    // Allow about one edit per four characters: `x264enk` → `x264enc`, not `queue` → `tee`.
    let limit = (name.chars().count() / 4).clamp(1, 3);
    best.filter(|(d, _)| *d <= limit)
        .map(|(_, n)| n.to_string())
}

/// A sentence for an element the registry does not have: which package to install, or which
/// name was probably meant.
pub fn explain_missing(element: &str) -> String {
    if let Some(pkg) = debian_package(element) {
        return format!(
            "element `{element}` is not installed: it is in the Debian package {pkg} (apt-get install {pkg})"
        );
    }
    match nearest(element) {
        Some(near) if is_installed(&near) => {
            format!("no element `{element}`; did you mean `{near}`?")
        }
        Some(near) => {
            let pkg = debian_package(&near).unwrap_or("a package that is not installed");
            format!("no element `{element}`; did you mean `{near}` (in {pkg}, not installed)?")
        }
        None => format!("no element `{element}` (gst-inspect-1.0 lists the installed elements)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_packages() {
        assert_eq!(debian_package("x264enc"), Some("gstreamer1.0-plugins-ugly"));
        assert_eq!(debian_package("nicesrc"), Some("gstreamer1.0-nice"));
        assert_eq!(debian_package("no-such-thing"), None);
    }
}
