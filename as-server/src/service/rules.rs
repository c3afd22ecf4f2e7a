//! The service's decisions on a request, as pure functions over plain values (no I/O, no
//! codec types), so each rule is unit-tested on its own. The service maps a [`Reject`] to a
//! response with the codec.
//!
//! Order of checks for a request reaching the TU (RFC 3261 section 8.2):
//! 1. `Max-Forwards: 0` → `483 Too Many Hops` (section 16.3 step 3; OPTIONS is still answered,
//!    the AS being its final recipient).
//! 2. method not implemented → `405 Method Not Allowed` with `Allow` (section 8.2.1).
//! 3. `Require` with an option we do not support → `420 Bad Extension` with `Unsupported`
//!    listing them (section 8.2.2.3; not for ACK and CANCEL).
//!
//! Then per request: [`invite_target`] (join / personal-channel creation) and
//! [`reinvite_kind`] (refresh or zap, see the [`super`] docs for the zap design).

use super::personal::{is_valid_channel_id, CREATION_USER};

/// Methods the AS implements (`Allow` header).
pub const ALLOWED: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "SUBSCRIBE",
    "MESSAGE",
];

/// Option tags the AS supports (`Supported` header). None yet.
pub const SUPPORTED: &[&str] = &[];

/// Body types the AS accepts (`Accept` header).
pub const ACCEPT: &str = "application/sdp";

/// `Allow` header value.
pub fn allow_value() -> String {
    ALLOWED.join(", ")
}

/// A refusal: status, reason phrase, extra headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Status code (4xx/5xx).
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Extra headers (name, value).
    pub headers: Vec<(&'static str, String)>,
}

impl Reject {
    /// A refusal without extra headers.
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// The checks every request goes through before its method handler (module docs, 1-3).
/// `requires` are the `Require` header values (comma lists allowed).
pub fn precheck<'a>(
    method: &str,
    max_forwards: Option<u32>,
    requires: impl IntoIterator<Item = &'a str>,
) -> Result<(), Reject> {
    if max_forwards == Some(0) && method != "OPTIONS" {
        return Err(Reject::new(483, "Too Many Hops"));
    }
    if !ALLOWED.contains(&method) {
        return Err(Reject::new(405, "Method Not Allowed").with("Allow", allow_value()));
    }
    if method != "ACK" && method != "CANCEL" {
        let unknown: Vec<&str> = requires
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty() && !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if !unknown.is_empty() {
            return Err(Reject::new(420, "Bad Extension").with("Unsupported", unknown.join(", ")));
        }
    }
    Ok(())
}

/// What an initial INVITE asks for, from its Request-URI user part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteTarget {
    /// `sip:new-channel@host`: create a personal channel.
    Create,
    /// `sip:<id>@host`: join channel `<id>`.
    Join(String),
}

/// Reads the Request-URI user part of an initial INVITE. A missing or invalid user part names
/// no channel: `404 Not Found`.
pub fn invite_target(user: Option<&str>) -> Result<InviteTarget, Reject> {
    match user {
        Some(CREATION_USER) => Ok(InviteTarget::Create),
        Some(u) if is_valid_channel_id(u) => Ok(InviteTarget::Join(u.to_owned())),
        _ => Err(Reject::new(404, "Not Found")),
    }
}

/// What a re-INVITE inside a viewer dialog asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReinviteKind {
    /// Same channel (the AS's Contact names the current one): session refresh.
    Refresh,
    /// Another channel: zap to it on the same relay path.
    Zap(String),
}

/// Decides refresh vs zap from the re-INVITE's Request-URI user part: the AS's Contact always
/// names the session's current channel, so a re-INVITE sent to that Contact (the normal
/// target refresh of RFC 3261 section 12.2.1.1) is a refresh, one to another user part is a
/// zap. A URI without a user part, or naming the creation URI, is a refresh. An invalid
/// channel id is `404` (the session stays where it is).
pub fn reinvite_kind(current: &str, user: Option<&str>) -> Result<ReinviteKind, Reject> {
    match user {
        None | Some(CREATION_USER) => Ok(ReinviteKind::Refresh),
        Some(u) if u == current => Ok(ReinviteKind::Refresh),
        Some(u) if is_valid_channel_id(u) => Ok(ReinviteKind::Zap(u.to_owned())),
        Some(_) => Err(Reject::new(404, "Not Found")),
    }
}

/// `Warning` for a 488 (RFC 3261 section 20.43): 304 "Media type not available" when no offered
/// media type (video/audio) is served, 305 "Incompatible media format" when the type is there
/// but no codec matches.
pub fn media_warning(host: &str, type_missing: bool) -> String {
    if type_missing {
        format!("304 {host} \"Media type not available\"")
    } else {
        format!("305 {host} \"Incompatible media format\"")
    }
}

/// 503 for overload, with `Retry-After` (RFC 3261 section 20.33).
pub fn overloaded(retry_after: u32) -> Reject {
    Reject::new(503, "Service Unavailable").with("Retry-After", retry_after.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_forwards_zero_is_483_except_options() {
        assert_eq!(precheck("INVITE", Some(0), []).unwrap_err().status, 483);
        assert!(precheck("OPTIONS", Some(0), []).is_ok());
        assert!(precheck("INVITE", Some(1), []).is_ok());
        assert!(precheck("INVITE", None, []).is_ok());
    }

    #[test]
    fn unknown_method_is_405_with_allow() {
        let r = precheck("PUBLISH", Some(70), []).unwrap_err();
        assert_eq!(r.status, 405);
        assert_eq!(r.headers[0].0, "Allow");
        assert!(r.headers[0].1.contains("INVITE"));
        assert!(r.headers[0].1.contains("SUBSCRIBE"));
        assert_eq!(precheck("FOOBAR", None, []).unwrap_err().status, 405);
    }

    #[test]
    fn unknown_require_is_420_with_unsupported() {
        let r = precheck("INVITE", Some(70), ["foo, bar", "baz"]).unwrap_err();
        assert_eq!(r.status, 420);
        assert_eq!(r.headers, vec![("Unsupported", "foo, bar, baz".to_owned())]);
        // ACK and CANCEL ignore Require
        assert!(precheck("ACK", Some(70), ["foo"]).is_ok());
        assert!(precheck("CANCEL", Some(70), ["foo"]).is_ok());
        assert!(precheck("INVITE", Some(70), [""]).is_ok());
    }

    #[test]
    fn invite_targets() {
        assert_eq!(
            invite_target(Some("news")),
            Ok(InviteTarget::Join("news".into()))
        );
        assert_eq!(invite_target(Some("new-channel")), Ok(InviteTarget::Create));
        assert_eq!(invite_target(None).unwrap_err().status, 404);
        assert_eq!(invite_target(Some("Bad Id")).unwrap_err().status, 404);
    }

    #[test]
    fn reinvite_refresh_or_zap() {
        assert_eq!(
            reinvite_kind("news", Some("news")),
            Ok(ReinviteKind::Refresh)
        );
        assert_eq!(reinvite_kind("news", None), Ok(ReinviteKind::Refresh));
        assert_eq!(
            reinvite_kind("news", Some("sport")),
            Ok(ReinviteKind::Zap("sport".into()))
        );
        assert_eq!(
            reinvite_kind("news", Some("NO WAY")).unwrap_err().status,
            404
        );
    }

    #[test]
    fn warnings_and_503() {
        assert_eq!(
            media_warning("as.example", false),
            "305 as.example \"Incompatible media format\""
        );
        assert_eq!(
            media_warning("127.0.0.1", true),
            "304 127.0.0.1 \"Media type not available\""
        );
        let r = overloaded(5);
        assert_eq!((r.status, r.headers[0].1.as_str()), (503, "5"));
    }
}
