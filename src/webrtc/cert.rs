//! The DTLS certificate every session uses: ECDSA P-256.
//!
//! webrtcbin 1.22 generates an RSA certificate, but stock aiortc (as DTLS client) offers only
//! ECDSA cipher suites, so the handshake fails with "no shared cipher". We give webrtcbin's
//! `dtlssrtpdec` an ECDSA certificate instead (its `pem` property: certificate and key in one
//! PEM), and publish the SHA-256 fingerprint of the certificate's DER — webrtcbin 1.22 would
//! hash the whole PEM string and advertise a wrong fingerprint.

use sha2::{Digest, Sha256};
use std::sync::OnceLock;

pub struct DtlsCertificate {
    /// Certificate and private key, PEM, as `dtlssrtpdec`'s `pem` property wants them.
    pub pem: String,
    /// `AB:CD:...`: SHA-256 of the certificate DER, for `a=fingerprint:sha-256`.
    pub fingerprint: String,
}

/// One certificate per process, made on first use.
pub fn certificate() -> Result<&'static DtlsCertificate, String> {
    static CERT: OnceLock<Result<DtlsCertificate, String>> = OnceLock::new();
    CERT.get_or_init(generate).as_ref().map_err(Clone::clone)
}

fn generate() -> Result<DtlsCertificate, String> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("cannot make a DTLS key: {e}"))?;
    let params = rcgen::CertificateParams::new(vec!["mediaweave".to_string()])
        .map_err(|e| format!("cannot make a DTLS certificate: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("cannot sign the DTLS certificate: {e}"))?;
    let digest = Sha256::digest(cert.der());
    let fingerprint = digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok(DtlsCertificate {
        pem: format!("{}{}", cert.pem(), key.serialize_pem()),
        fingerprint,
    })
}

/// Replaces every `a=fingerprint:` line of an SDP with ours.
pub fn patch_fingerprint(sdp: &str, cert: &DtlsCertificate) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("a=fingerprint:") {
            out.push_str(&format!("a=fingerprint:sha-256 {}\r\n", cert.fingerprint));
        } else {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_replaced_on_every_media() {
        let cert = certificate().expect("certificate");
        assert!(cert.pem.contains("BEGIN CERTIFICATE") && cert.pem.contains("PRIVATE KEY"));
        assert_eq!(cert.fingerprint.len(), 32 * 3 - 1);
        let sdp = "v=0\r\nm=video 9 UDP 96\r\na=fingerprint:sha-256 00:11\r\nm=audio 9 UDP 97\r\na=fingerprint:sha-256 00:11\r\n";
        let patched = patch_fingerprint(sdp, cert);
        assert_eq!(patched.matches(&cert.fingerprint).count(), 2);
        assert!(!patched.contains("00:11"));
    }
}
