//! Simulcast publishers, sans I/O: what a publisher's offer says it sends (`a=simulcast:send`
//! with one `a=rid` per layer, RFC 8853/8851) and the lines our answer needs so the publisher
//! really sends every layer. webrtcbin (1.22) receives the layers — a stream per SSRC, told
//! apart by the MID and RID header extensions — but does not answer simulcast itself.

/// The header extensions that tell a layer's packets apart (RFC 8843, RFC 8852).
pub const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
pub const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
pub const REPAIRED_RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
/// Transport-wide congestion control: with it our feedback lets the publisher's estimate
/// grow past its start, which it needs to send the upper layers at all.
const TWCC_URI: &str = super::sdp::TWCC_URI;

/// The layers a publisher's video m-line offers to send, and the header extensions it numbers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Offered {
    /// The layers' rids, in the offer's order (`a=simulcast:send`), paused ones (`~`) left out.
    pub rids: Vec<String>,
    /// `a=extmap` lines of the offer's video m-line for the MID, RID, repaired-RID and TWCC
    /// extensions.
    pub extmaps: Vec<String>,
}

/// What a publisher's pipeline needs to tell its layers apart: their rids, top first, and
/// the RID header extension's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layers {
    pub rids: Vec<String>,
    pub rid_ext: u8,
}

impl Offered {
    pub fn layers(&self) -> Option<Layers> {
        Some(Layers {
            rids: self.top_first(),
            rid_ext: self.rid_ext_id()?,
        })
    }

    /// The layers top first: browsers list them lowest first (`a=simulcast:send q;h;f`
    /// for quarter, half and full size), as WebRTC SFUs expect.
    pub fn top_first(&self) -> Vec<String> {
        self.rids.iter().rev().cloned().collect()
    }

    /// The id the offer gives the RID header extension.
    pub fn rid_ext_id(&self) -> Option<u8> {
        self.extmaps
            .iter()
            .find(|l| l.split_whitespace().nth(1) == Some(RID_URI))
            .and_then(|l| {
                l.strip_prefix("a=extmap:")?
                    .split(['/', ' '])
                    .next()?
                    .parse()
                    .ok()
            })
    }
}

/// The rid a packet carries in the RID header extension numbered `id` (one- or two-byte form).
pub fn packet_rid(buffer: &gst::BufferRef, id: u8) -> Option<String> {
    let rtp = gst_rtp::RTPBuffer::from_buffer_readable(buffer).ok()?;
    let value = rtp
        .extension_onebyte_header(id, 0)
        .or_else(|| rtp.extension_twobytes_header(id, 0).map(|(_, v)| v))?;
    let rid = std::str::from_utf8(value).ok()?.trim_end_matches('\0');
    valid_rid(rid).then(|| rid.to_string())
}

/// Reads the simulcast layers of the offer's first sending video m-line; `None` without
/// simulcast (fewer than two layers, or no RID extension to tell them apart).
pub fn read_offer(offer: &str) -> Option<Offered> {
    let section = media_sections(offer)
        .into_iter()
        .find(|s| s.first().is_some_and(|l| l.starts_with("m=video")))?;
    let attr = |name: &'static str| {
        section
            .iter()
            .filter_map(move |l| l.strip_prefix("a=")?.strip_prefix(name))
            .map(str::trim)
    };
    let sent: Vec<String> = attr("simulcast:")
        .filter_map(|v| {
            let mut words = v.split_whitespace();
            (words.next()? == "send").then(|| words.next().map(str::to_string))?
        })
        .flat_map(|list| {
            list.split([';', ','])
                .filter(|r| !r.is_empty() && !r.starts_with('~'))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let declared: Vec<&str> = attr("rid:")
        .filter_map(|v| {
            let mut words = v.split_whitespace();
            let (rid, dir) = (words.next()?, words.next()?);
            (dir == "send").then_some(rid)
        })
        .collect();
    let rids: Vec<String> = sent
        .into_iter()
        .filter(|r| declared.contains(&r.as_str()) && valid_rid(r))
        .collect();
    let extmaps: Vec<String> = attr("extmap:")
        .filter(|v| {
            [MID_URI, RID_URI, REPAIRED_RID_URI, TWCC_URI]
                .iter()
                .any(|u| v.split_whitespace().nth(1) == Some(u))
        })
        .map(|v| format!("a=extmap:{v}"))
        .collect();
    let has_rid = extmaps.iter().any(|l| l.contains(RID_URI));
    (rids.len() >= 2 && has_rid).then_some(Offered { rids, extmaps })
}

/// RFC 8851: a rid is 1–16 letters, digits, `-` or `_` (we allow no more).
fn valid_rid(rid: &str) -> bool {
    (1..=16).contains(&rid.len())
        && rid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Our answer with simulcast accepted on its first video m-line: the offer's MID/RID
/// extensions (where the answer lacks them), an `a=rid:… recv` per layer and
/// `a=simulcast:recv`. Other m-lines are untouched.
pub fn accept(answer: &str, offered: &Offered) -> String {
    let eol = if answer.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut out = String::with_capacity(answer.len() + 256);
    let mut done = false;
    for section in media_sections(answer) {
        let video = !done
            && section
                .first()
                .is_some_and(|l| l.starts_with("m=video") && !l.starts_with("m=video 0 "));
        for line in &section {
            out.push_str(line);
            out.push_str(eol);
        }
        if video {
            done = true;
            for ext in &offered.extmaps {
                let uri = ext.split_whitespace().nth(1).unwrap_or_default();
                if !section
                    .iter()
                    .any(|l| l.starts_with("a=extmap:") && l.contains(uri))
                {
                    out.push_str(ext);
                    out.push_str(eol);
                }
            }
            for rid in &offered.rids {
                out.push_str(&format!("a=rid:{rid} recv{eol}"));
            }
            out.push_str(&format!("a=simulcast:recv {}{eol}", offered.rids.join(";")));
        }
    }
    out
}

/// The description's lines split at each `m=` line; the session part first.
fn media_sections(sdp: &str) -> Vec<Vec<&str>> {
    let mut sections = vec![Vec::new()];
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            continue;
        }
        if line.starts_with("m=") {
            sections.push(Vec::new());
        }
        if let Some(last) = sections.last_mut() {
            last.push(line);
        }
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\n\
        a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\n\
        a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
        a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n\
        a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id\r\n\
        a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
        a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f\r\n";

    #[test]
    fn the_offer_layers_and_their_extensions_are_read() {
        let offered = read_offer(OFFER).expect("simulcast");
        assert_eq!(offered.rids, ["q", "h", "f"]);
        assert_eq!(offered.extmaps.len(), 4);
        assert!(offered.extmaps[1].starts_with("a=extmap:10 "));
        assert_eq!(offered.rid_ext_id(), Some(10));
        assert_eq!(offered.top_first(), ["f", "h", "q"]);
    }

    #[test]
    fn paused_undeclared_and_single_layers_are_not_simulcast() {
        let paused = OFFER.replace("send q;h;f", "send q;~h;f");
        assert_eq!(read_offer(&paused).expect("two left").rids, ["q", "f"]);
        let undeclared = OFFER.replace("a=rid:h send\r\n", "");
        assert_eq!(read_offer(&undeclared).expect("two left").rids, ["q", "f"]);
        let one = OFFER.replace("send q;h;f", "send q");
        assert_eq!(read_offer(&one), None);
        let no_rid_ext = OFFER.replace("sdes:rtp-stream-id", "sdes:other");
        assert_eq!(read_offer(&no_rid_ext), None);
        assert_eq!(read_offer("v=0\r\nm=video 9 RTP/AVP 96\r\n"), None);
    }

    #[test]
    fn the_answer_receives_every_layer_on_its_video_line_only() {
        let answer = "v=0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=recvonly\r\n\
            a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n";
        let offered = read_offer(OFFER).expect("simulcast");
        let out = accept(answer, &offered);
        let video = &out[out.find("m=video").expect("video")..];
        assert!(video.contains("a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n"));
        assert_eq!(video.matches("sdes:mid").count(), 1, "{out}");
        assert!(video.contains("a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\n"));
        assert!(video.ends_with("a=simulcast:recv q;h;f\r\n"));
        let audio = &out[..out.find("m=video").expect("video")];
        assert!(!audio.contains("rid"));
    }
}
