//! Reading a remote offer: which payload types to send with, so the answer matches the offer.

use crate::description::VideoCodec;

/// What we will send in answer to an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedFormats {
    /// Payload type for our video codec, if the offer has a video m-line that accepts it.
    pub video_pt: Option<u32>,
    /// Payload type for Opus, if the offer has an audio m-line that accepts it.
    pub audio_pt: Option<u32>,
    /// The offer has a data channel (m=application).
    pub data_channel: bool,
    /// The id the offer gives the transport-wide congestion control header extension on its
    /// video m-line (its peer then sends TWCC feedback).
    pub twcc_id: Option<u8>,
    /// A publisher's simulcast layers (its video m-line sends several, told apart by rid).
    pub simulcast: Option<super::simulcast::Offered>,
}

/// Why a viewer's offer cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// It does not accept the stream's codec, or its H.264 profile (HTTP `406`).
    #[error("{0}")]
    Codec(String),
    /// Anything else: not SDP, sends media, no usable transport (HTTP `400`).
    #[error("{0}")]
    Invalid(String),
}

impl From<String> for OfferError {
    fn from(s: String) -> Self {
        OfferError::Invalid(s)
    }
}

/// An H.264 profile as far as decoding goes: a decoder of one decodes the ones before it
/// (Constrained Baseline, what encoders for the web send, is in every one of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum H264Profile {
    Baseline,
    Main,
    High,
    /// High 10, 4:2:2, 4:4:4 and the rest.
    Beyond,
}

impl H264Profile {
    /// From the `profile` field of GStreamer's `video/x-h264` caps.
    pub fn from_caps(name: &str) -> Option<H264Profile> {
        Some(match name {
            "constrained-baseline" | "baseline" => H264Profile::Baseline,
            "main" | "extended" => H264Profile::Main,
            "high" | "progressive-high" | "constrained-high" => H264Profile::High,
            "" => return None,
            _ => H264Profile::Beyond,
        })
    }

    /// From an SDP `profile-level-id` (hex: profile_idc, constraint flags, level).
    pub fn from_profile_level_id(hex: &str) -> Option<H264Profile> {
        let idc = u8::from_str_radix(hex.get(0..2)?, 16).ok()?;
        Some(match idc {
            66 => H264Profile::Baseline,
            77 | 88 => H264Profile::Main,
            100 => H264Profile::High,
            _ => H264Profile::Beyond,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            H264Profile::Baseline => "Baseline",
            H264Profile::Main => "Main",
            H264Profile::High => "High",
            H264Profile::Beyond => "High 10/4:2:2/4:4:4",
        }
    }
}

/// Picks our payload types from `offer`, for a stream of `codec` (and, for H.264, of
/// `profile` when known). Fails with a sentence when the offer cannot be answered by a viewer
/// session: not SDP, sends media, or takes none of our video codec or profile.
pub fn read_offer(
    offer: &str,
    codec: VideoCodec,
    profile: Option<H264Profile>,
) -> Result<OfferedFormats, OfferError> {
    let msg = parse(offer)?;
    let mut formats = OfferedFormats {
        video_pt: None,
        audio_pt: None,
        data_channel: false,
        twcc_id: None,
        simulcast: None,
    };
    let (mut saw_video, mut lower_profile) = (false, false);
    for media in msg.medias() {
        if media.attribute_val("sendonly").is_some() {
            return Err(OfferError::Invalid(
                "the offer only sends media; to publish a stream use WHIP".into(),
            ));
        }
        match media.media() {
            Some("video") => {
                saw_video = true;
                if formats.video_pt.is_none() {
                    formats.video_pt = pick_video(media, codec, profile);
                    formats.twcc_id = extension_id(media, TWCC_URI);
                    lower_profile |=
                        formats.video_pt.is_none() && pick_video(media, codec, None).is_some();
                }
            }
            Some("audio") if formats.audio_pt.is_none() => {
                formats.audio_pt = rtpmaps(media)
                    .find(|(_, enc)| enc.eq_ignore_ascii_case("opus/48000/2"))
                    .map(|(pt, _)| pt);
            }
            Some("application") => formats.data_channel = true,
            _ => {}
        }
    }
    if saw_video && formats.video_pt.is_none() {
        let codec = codec.name().to_uppercase();
        return Err(OfferError::Codec(match profile {
            Some(p) if lower_profile => format!(
                "the offer accepts {codec} video only in a profile below {} (by its profile-level-id), and this stream is {codec} {} profile",
                p.name(),
                p.name()
            ),
            _ => format!("the offer does not accept {codec} video, which this stream sends"),
        }));
    }
    if formats.video_pt.is_none() && formats.audio_pt.is_none() && !formats.data_channel {
        return Err(OfferError::Invalid(
            "the offer has no video, audio or data channel to answer".into(),
        ));
    }
    check_transport(&msg)?;
    Ok(formats)
}

/// Checks a viewer's answer to our offer: a video m-line it rejects (port 0) means it cannot
/// take the stream's codec; the session would connect and show nothing.
pub fn check_answer(answer: &str, codec: VideoCodec) -> Result<(), String> {
    let msg = parse(answer).map_err(|_| "the answer is not a valid SDP".to_string())?;
    let refused = msg
        .medias()
        .any(|m| m.media() == Some("video") && m.port() == 0);
    if refused {
        return Err(format!(
            "the answer refuses the video: this stream sends {} video",
            codec.name().to_uppercase()
        ));
    }
    Ok(())
}

/// Whether an answer takes audio (an audio m-line it did not refuse).
pub fn answer_takes_audio(answer: &str) -> bool {
    parse(answer).is_ok_and(|msg| {
        msg.medias()
            .any(|m| m.media() == Some("audio") && m.port() != 0)
    })
}

/// Reads a publisher's offer (WHIP, `/publish`): the payload types it sends our codec and Opus
/// with. Fails when it sends nothing we can record.
pub fn read_publish_offer(
    offer: &str,
    codec: VideoCodec,
    want_audio: bool,
) -> Result<OfferedFormats, String> {
    let msg = parse(offer)?;
    let mut formats = OfferedFormats {
        video_pt: None,
        audio_pt: None,
        data_channel: false,
        twcc_id: None,
        simulcast: super::simulcast::read_offer(offer),
    };
    let mut saw_video = false;
    for media in msg.medias() {
        let receives_only =
            media.attribute_val("recvonly").is_some() || media.attribute_val("inactive").is_some();
        match media.media() {
            Some("video") if !receives_only && formats.video_pt.is_none() => {
                saw_video = true;
                formats.video_pt = pick_video(media, codec, None);
            }
            Some("audio") if !receives_only && want_audio && formats.audio_pt.is_none() => {
                formats.audio_pt = rtpmaps(media)
                    .find(|(_, enc)| enc.eq_ignore_ascii_case("opus/48000/2"))
                    .map(|(pt, _)| pt);
            }
            Some("application") => formats.data_channel = true,
            _ => {}
        }
    }
    if formats.video_pt.is_none() {
        return Err(if saw_video {
            format!(
                "the offer does not send {} video, which this pipeline records",
                codec.name().to_uppercase()
            )
        } else {
            "the offer sends no video: to watch a pipeline use WHEP".into()
        });
    }
    check_transport(&msg)?;
    Ok(formats)
}

fn parse(offer: &str) -> Result<gst_sdp::SDPMessage, String> {
    // gst-sdp asserts GStreamer is initialized; a no-op after the first call.
    gst::init().map_err(|e| format!("GStreamer is not available: {e}"))?;
    // gst-sdp asserts (a GLib critical) on an empty buffer instead of failing.
    if offer.trim().is_empty() {
        return Err("the offer is empty".into());
    }
    gst_sdp::SDPMessage::parse_buffer(offer.as_bytes())
        .map_err(|_| "the offer is not a valid SDP".to_string())
}

/// Hash functions of `a=fingerprint` (RFC 8122) and their digest lengths in bytes.
const FINGERPRINT_HASHES: &[(&str, usize)] = &[
    ("sha-1", 20),
    ("sha-224", 28),
    ("sha-256", 32),
    ("sha-384", 48),
    ("sha-512", 64),
];

/// What ICE and DTLS need from an offer, checked before webrtcbin sees it (which would fail
/// late, or accept a session that can never connect): at least one m-line that is not
/// rejected, and for each such m-line ICE credentials and a certificate fingerprint with a
/// known hash (at its level or the session's), and a valid `a=setup`.
fn check_transport(msg: &gst_sdp::SDPMessageRef) -> Result<(), String> {
    if msg.medias_len() == 0 {
        return Err("the offer has no m-line: there is nothing to answer".into());
    }
    let active: Vec<&gst_sdp::SDPMediaRef> = msg.medias().filter(|m| m.port() != 0).collect();
    if active.is_empty() {
        return Err(
            "every m-line of the offer is rejected (port 0): there is nothing to answer".into(),
        );
    }
    for (key, what) in [
        ("ice-ufrag", "ICE credentials"),
        ("ice-pwd", "ICE credentials"),
        ("fingerprint", "the DTLS certificate's fingerprint"),
    ] {
        for media in &active {
            let value = media.attribute_val(key).or_else(|| msg.attribute_val(key));
            if value.is_none_or(|v| v.trim().is_empty()) {
                return Err(format!(
                    "the offer's {} m-line has no a={key} ({what}), at its level or the session's",
                    media.media().unwrap_or("unnamed")
                ));
            }
        }
    }
    let media_attrs = active
        .iter()
        .flat_map(|m| (0..m.attributes_len()).filter_map(move |i| m.attribute(i)));
    let session_attrs = (0..msg.attributes_len()).filter_map(|i| msg.attribute(i));
    for attr in session_attrs.chain(media_attrs) {
        let value = attr.value().unwrap_or_default().trim();
        match attr.key() {
            "fingerprint" => check_fingerprint(value)?,
            "setup" if !matches!(value, "actpass" | "active" | "passive") => {
                return Err(format!(
                    "a=setup:{value} is not one of actpass, active, passive"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `sha-256 AB:CD:…`: a known hash and a digest of its length.
fn check_fingerprint(value: &str) -> Result<(), String> {
    let (hash, digest) = value.split_once(' ').unwrap_or((value, ""));
    let Some((_, len)) = FINGERPRINT_HASHES
        .iter()
        .find(|(h, _)| h.eq_ignore_ascii_case(hash))
    else {
        return Err(format!(
            "a=fingerprint uses the unknown hash `{hash}` (use one of sha-1, sha-224, sha-256, sha-384, sha-512)"
        ));
    };
    let bytes: Vec<&str> = digest.trim().split(':').collect();
    let well_formed = bytes.len() == *len
        && bytes
            .iter()
            .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
    if !well_formed {
        return Err(format!(
            "a=fingerprint:{hash} is not {len} hex bytes separated by colons"
        ));
    }
    Ok(())
}

/// `(payload type, "ENC/clock[/channels]")` of each `a=rtpmap`.
/// The transport-wide congestion control RTP header extension.
pub const TWCC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// The id an m-line gives the header extension `uri` (`a=extmap:ID[/direction] URI`), if
/// it is a one-byte id (1 to 14).
fn extension_id(media: &gst_sdp::SDPMediaRef, uri: &str) -> Option<u8> {
    (0..media.attributes_len())
        .filter_map(|i| media.attribute_val_n("extmap", i))
        .find_map(|v| {
            let mut parts = v.split_whitespace();
            let id = parts.next()?.split('/').next()?.parse::<u8>().ok()?;
            (parts.next()? == uri && (1..=14).contains(&id)).then_some(id)
        })
}

fn rtpmaps(media: &gst_sdp::SDPMediaRef) -> impl Iterator<Item = (u32, String)> + '_ {
    (0..media.attributes_len()).filter_map(move |i| {
        let v = media.attribute_val_n("rtpmap", i)?;
        let (pt, enc) = v.split_once(' ')?;
        // RTP payload types are 7 bits (RFC 3550); anything else is not a usable entry.
        let pt: u32 = pt.parse().ok().filter(|pt| *pt <= 127)?;
        Some((pt, enc.trim().to_string()))
    })
}

fn fmtp(media: &gst_sdp::SDPMediaRef, pt: u32) -> Option<&str> {
    (0..media.attributes_len())
        .filter_map(|i| media.attribute_val_n("fmtp", i))
        .find_map(|v| {
            let (p, params) = v.split_once(' ')?;
            (p.parse::<u32>().ok()? == pt).then_some(params)
        })
}

/// Our payload type in `media`: the codec's, and for H.264 packetization-mode 1 and a
/// profile that decodes `profile` (any, if None; an entry without profile-level-id is
/// taken to decode anything, as browsers' and players' decoders do).
fn pick_video(
    media: &gst_sdp::SDPMediaRef,
    codec: VideoCodec,
    profile: Option<H264Profile>,
) -> Option<u32> {
    let name = match codec {
        VideoCodec::H264 => "H264/90000",
        VideoCodec::Vp8 => "VP8/90000",
        VideoCodec::Vp9 => "VP9/90000",
        VideoCodec::Av1 => "AV1/90000",
    };
    let candidates: Vec<u32> = rtpmaps(media)
        .filter(|(_, enc)| enc.eq_ignore_ascii_case(name))
        .map(|(pt, _)| pt)
        .collect();
    if codec != VideoCodec::H264 {
        return candidates.first().copied();
    }
    // H.264: packetization-mode=1 (what rtph264pay sends), preferring a constrained-baseline
    // profile-level-id (42e0xx / 42c0xx) — the stream we encode for browsers.
    let params = |pt: u32| fmtp(media, pt).unwrap_or("").to_ascii_lowercase();
    let decodes = |pt: u32| {
        let p = params(pt);
        let offered = p
            .split(';')
            .find_map(|kv| kv.trim().strip_prefix("profile-level-id="))
            .and_then(H264Profile::from_profile_level_id);
        match (profile, offered) {
            (Some(stream), Some(offered)) => offered >= stream,
            _ => true,
        }
    };
    let mode1: Vec<u32> = candidates
        .iter()
        .copied()
        .filter(|pt| params(*pt).contains("packetization-mode=1") && decodes(*pt))
        .collect();
    let constrained = mode1.iter().copied().find(|pt| {
        let p = params(*pt);
        p.contains("profile-level-id=42e0") || p.contains("profile-level-id=42c0")
    });
    constrained.or_else(|| mode1.first().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AIORTC_LIKE: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
a=ice-ufrag:mx1s\r\na=ice-pwd:DbeoUYTVA2Xcc6eDtw2B0U\r\n\
a=fingerprint:sha-256 A8:11:DE:6F:AA:78:40:23:C1:45:D7:2D:94:C1:7B:CF:D3:13:72:7F:A9:74:C6:94:21:5A:63:7C:E3:F5:05:56\r\n\
a=setup:actpass\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 96 0\r\nc=IN IP4 0.0.0.0\r\na=recvonly\r\n\
a=rtpmap:96 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 97 99 101 103\r\nc=IN IP4 0.0.0.0\r\na=recvonly\r\n\
a=rtpmap:97 VP8/90000\r\na=rtpmap:99 H264/90000\r\n\
a=fmtp:99 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f\r\n\
a=rtpmap:101 H264/90000\r\na=fmtp:101 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:103 H264/90000\r\na=fmtp:103 packetization-mode=1;profile-level-id=640c1f\r\n";

    #[test]
    fn picks_packetization_mode_1_constrained_baseline() {
        let f = read_offer(AIORTC_LIKE, VideoCodec::H264, None).expect("answerable");
        assert_eq!(f.video_pt, Some(101));
        assert_eq!(f.audio_pt, Some(96));
        assert!(!f.data_channel);
        assert_eq!(
            read_offer(AIORTC_LIKE, VideoCodec::Vp8, None)
                .expect("vp8")
                .video_pt,
            Some(97)
        );
    }

    #[test]
    fn reads_the_twcc_extension_id_of_the_video() {
        assert_eq!(
            read_offer(AIORTC_LIKE, VideoCodec::H264, None)
                .expect("ok")
                .twcc_id,
            None
        );
        let chrome_like = AIORTC_LIKE.replace(
            "a=rtpmap:97 VP8/90000\r\n",
            &format!("a=extmap:2 urn:ietf:params:rtp-hdrext:toffset\r\na=extmap:3/recvonly {TWCC_URI}\r\na=rtpmap:97 VP8/90000\r\n"),
        );
        let f = read_offer(&chrome_like, VideoCodec::H264, None).expect("ok");
        assert_eq!(f.twcc_id, Some(3));
        let two_byte = chrome_like.replace("extmap:3/recvonly", "extmap:20");
        assert_eq!(
            read_offer(&two_byte, VideoCodec::H264, None)
                .expect("ok")
                .twcc_id,
            None
        );
    }

    #[test]
    fn publisher_offers_must_send_our_codec() {
        let publishing = AIORTC_LIKE.replace("a=recvonly", "a=sendonly");
        let f = read_publish_offer(&publishing, VideoCodec::H264, true).expect("recordable");
        assert_eq!((f.video_pt, f.audio_pt), (Some(101), Some(96)));
        assert_eq!(
            read_publish_offer(&publishing, VideoCodec::H264, false)
                .expect("ok")
                .audio_pt,
            None
        );
        let err = read_publish_offer(AIORTC_LIKE, VideoCodec::H264, true).expect_err("recvonly");
        assert!(err.contains("WHEP"), "{err}");
    }

    #[test]
    fn ice_and_dtls_essentials_are_required() {
        let drop_lines = |prefix: &str| {
            AIORTC_LIKE
                .lines()
                .filter(|l| !l.starts_with(prefix))
                .collect::<Vec<_>>()
                .join("\r\n")
        };
        for (offer, expected) in [
            (drop_lines("a=ice-ufrag"), "has no a=ice-ufrag"),
            (drop_lines("a=ice-pwd"), "has no a=ice-pwd"),
            (drop_lines("a=fingerprint"), "has no a=fingerprint"),
            (
                AIORTC_LIKE.replace("a=fingerprint:sha-256", "a=fingerprint:sha-999"),
                "unknown hash `sha-999`",
            ),
            (
                AIORTC_LIKE.replace("a=fingerprint:sha-256 ", "a=fingerprint:sha-256 AB:"),
                "is not 32 hex bytes",
            ),
            (
                AIORTC_LIKE.replace("a=setup:actpass", "a=setup:holdconn"),
                "a=setup:holdconn",
            ),
            (
                AIORTC_LIKE
                    .lines()
                    .map(|l| match l.strip_prefix("m=") {
                        Some(rest) => {
                            let mut parts: Vec<&str> = rest.split(' ').collect();
                            parts[1] = "0";
                            format!("m={}", parts.join(" "))
                        }
                        None => l.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("\r\n"),
                "every m-line of the offer is rejected",
            ),
        ] {
            let err = read_offer(&offer, VideoCodec::H264, None).expect_err(expected);
            assert!(err.to_string().contains(expected), "{err}");
            let publishing = offer.replace("a=recvonly", "a=sendonly");
            let err = read_publish_offer(&publishing, VideoCodec::H264, false).expect_err(expected);
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_answer() {
        assert!(read_offer("garbage", VideoCodec::H264, None).is_err());
        let err = read_offer(AIORTC_LIKE, VideoCodec::Vp9, None).expect_err("no vp9");
        assert!(
            matches!(&err, OfferError::Codec(e) if e.contains("does not accept VP9")),
            "{err}"
        );
        let huge_pt = AIORTC_LIKE.replace("101", "300");
        // PT 300 is not a payload type: the next packetization-mode=1 entry is used.
        let f = read_offer(&huge_pt, VideoCodec::H264, None).expect("answerable");
        assert_eq!(f.video_pt, Some(103));
        let publisher = AIORTC_LIKE.replace("a=recvonly", "a=sendonly");
        assert!(
            read_offer(&publisher, VideoCodec::H264, None)
                .expect_err("sends")
                .to_string()
                .contains("WHIP")
        );
    }

    #[test]
    fn an_h264_stream_needs_a_profile_that_decodes_it() {
        use H264Profile::*;
        // Constrained Baseline: the constrained-baseline entry, as before.
        let f = read_offer(AIORTC_LIKE, VideoCodec::H264, Some(Baseline)).expect("cb");
        assert_eq!(f.video_pt, Some(101));
        // High: only the 640c1f entry decodes it.
        let f = read_offer(AIORTC_LIKE, VideoCodec::H264, Some(High)).expect("high");
        assert_eq!(f.video_pt, Some(103));
        // Beyond High: nothing offered decodes it; the error names the profile.
        let err = read_offer(AIORTC_LIKE, VideoCodec::H264, Some(Beyond)).expect_err("none");
        assert!(
            matches!(&err, OfferError::Codec(e) if e.contains("H264") && e.contains("profile")),
            "{err}"
        );
        // An entry without profile-level-id is taken to decode anything.
        let bare = AIORTC_LIKE.replace(";profile-level-id=640c1f", "");
        let f = read_offer(&bare, VideoCodec::H264, Some(Beyond)).expect("bare");
        assert_eq!(f.video_pt, Some(103));
    }

    #[test]
    fn profiles_from_caps_and_sdp() {
        use H264Profile::*;
        assert_eq!(
            H264Profile::from_caps("constrained-baseline"),
            Some(Baseline)
        );
        assert_eq!(H264Profile::from_caps("high"), Some(High));
        assert_eq!(H264Profile::from_caps("high-4:4:4"), Some(Beyond));
        assert_eq!(H264Profile::from_caps(""), None);
        assert_eq!(H264Profile::from_profile_level_id("42e01f"), Some(Baseline));
        assert_eq!(H264Profile::from_profile_level_id("4d001f"), Some(Main));
        assert_eq!(H264Profile::from_profile_level_id("640c1f"), Some(High));
        assert_eq!(H264Profile::from_profile_level_id("zz"), None);
        assert!(Baseline < Main && Main < High && High < Beyond);
    }
}
