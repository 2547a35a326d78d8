//! Who may play an RTSP mount when the service has tokens: RTSP clients cannot send a Bearer
//! header, so the token is the Basic-auth password (`rtsp://any:TOKEN@host:8554/name`; the
//! user name is ignored) and it needs `view` of the mount's pipeline, as for `/whep/{name}`.
//! No credentials get `401` with a Basic challenge (players then ask, or retry with the URL's
//! user info); a token that is not ours or may not view the pipeline gets `401` too, with no
//! hint which pipelines exist.

use crate::auth::Auth;
use base64::Engine;
use gst_rtsp_server::gst_rtsp;
use gst_rtsp_server::prelude::*;
use gst_rtsp_server::subclass::prelude::*;
use std::sync::Arc;

glib::wrapper! {
    /// An `RTSPAuth` that checks the service's tokens.
    pub struct TokenAuth(ObjectSubclass<imp::TokenAuth>)
        @extends gst_rtsp_server::RTSPAuth;
}

impl TokenAuth {
    pub fn new(auth: Arc<Auth>) -> TokenAuth {
        let this: TokenAuth = glib::Object::new();
        let _ = this.imp().auth.set(auth);
        this
    }
}

/// The password of a Basic `Authorization` value (`base64(user:password)`).
fn basic_password(authorization: &str) -> Option<String> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(authorization.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_string())
}

/// The pipeline a request is for: the URL's first path component (`/name/stream=0` → `name`).
fn pipeline_of(ctx: &gst_rtsp_server::RTSPContext) -> Option<String> {
    ctx.uri()?
        .decode_path_components()
        .into_iter()
        .map(|c| c.to_string())
        .find(|c| !c.is_empty())
}

mod imp {
    use super::*;
    use std::sync::OnceLock;

    #[derive(Default)]
    pub struct TokenAuth {
        pub(super) auth: OnceLock<Arc<Auth>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for TokenAuth {
        const NAME: &'static str = "MediaweaveTokenAuth";
        type Type = super::TokenAuth;
        type ParentType = gst_rtsp_server::RTSPAuth;
    }

    impl ObjectImpl for TokenAuth {}

    impl TokenAuth {
        /// Whether the request's Basic password is a token that may view `pipeline`.
        fn allowed(&self, ctx: &gst_rtsp_server::RTSPContext, pipeline: &str) -> bool {
            let (Some(auth), Some(request)) = (self.auth.get(), ctx.request()) else {
                return false;
            };
            if auth.is_open() {
                return true;
            }
            request.parse_auth_credentials().iter().any(|c| {
                c.scheme() == gst_rtsp::RTSPAuthMethod::Basic
                    && c.authorization()
                        .and_then(basic_password)
                        .and_then(|token| auth.check(&token).map(|g| g.can_view(pipeline)))
                        .unwrap_or(false)
            })
        }
    }

    impl RTSPAuthImpl for TokenAuth {
        fn authenticate(&self, _ctx: &gst_rtsp_server::RTSPContext) -> bool {
            // Checked per request and pipeline in `check`, where the URL is known.
            true
        }

        fn check(&self, ctx: &gst_rtsp_server::RTSPContext, check: &glib::GString) -> bool {
            // Transport settings and the like are not about who may watch.
            if !check.starts_with("auth.check.media.factory") {
                return true;
            }
            let allowed = pipeline_of(ctx).is_some_and(|p| self.allowed(ctx, &p));
            if !allowed && let Some(response) = ctx.response() {
                response.init_response(gst_rtsp::RTSPStatusCode::Unauthorized, ctx.request());
                response.add_header(
                    gst_rtsp::RTSPHeaderField::WwwAuthenticate,
                    "Basic realm=\"mediaweave\"",
                );
                if let Some(client) = ctx.client() {
                    client.send_message(response, ctx.session());
                }
            }
            allowed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::basic_password;

    #[test]
    fn the_password_is_the_token() {
        // base64("any:s3cret")
        assert_eq!(
            basic_password("YW55OnMzY3JldA==").as_deref(),
            Some("s3cret")
        );
        // base64(":tok:en") — a colon in the password stays
        assert_eq!(basic_password("OnRvazplbg==").as_deref(), Some("tok:en"));
        assert_eq!(basic_password("not base64!"), None);
        // base64("nocolon")
        assert_eq!(basic_password("bm9jb2xvbg=="), None);
    }
}
