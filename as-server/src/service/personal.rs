//! Personal channels: a UE sends `INVITE sip:new-channel@<as-host>` with a `sendonly` SDP offer
//! and a `Subject` naming the channel; the AS creates the channel (its id is a slug of the
//! Subject, made unique), asks the relay for an ingest, and answers `200 OK` with a `recvonly`
//! SDP pointing at the ingest address. The channel is listed while the dialog lives and others
//! can join it as `sip:<id>@<as-host>`; the owner's BYE removes it and the AS sends BYE to every
//! viewer still watching it.
//!
//! This module holds the pure parts: the creation URI, channel-id rules and slugging.

/// User part of the creation URI `sip:new-channel@<as-host>`.
pub const CREATION_USER: &str = "new-channel";

/// Longest channel id the AS makes from a Subject.
pub const MAX_ID_LEN: usize = 48;

/// A channel id is a non-empty, lower-case SIP user part made of `a-z 0-9 - _ .`
/// (a subset of RFC 3261 section 25.1 `unreserved`, so it needs no escaping), at most 64
/// bytes, and not the creation URI's user part.
pub fn is_valid_channel_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id != CREATION_USER
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

/// Slug of a Subject: ASCII letters/digits lower-cased, every other run of characters one `-`,
/// trimmed, at most [`MAX_ID_LEN`] bytes; `"channel"` when nothing is left.
pub fn slug(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len().min(MAX_ID_LEN));
    let mut dash = false;
    for c in subject.chars() {
        if out.len() >= MAX_ID_LEN {
            break;
        }
        if c.is_ascii_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            dash = true;
        }
    }
    out.truncate(MAX_ID_LEN);
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() || out == CREATION_USER {
        out = format!("{}channel", if out.is_empty() { "" } else { "my-" });
    }
    out
}

/// A unique id for a Subject: its slug, or the slug with `-2`, `-3`, ... appended, the first
/// one `taken` says is free. Gives up after 1000 tries (`None`).
pub fn unique_id(subject: &str, mut taken: impl FnMut(&str) -> bool) -> Option<String> {
    let base = slug(subject);
    if !taken(&base) {
        return Some(base);
    }
    (2..1000)
        .map(|n| format!("{base}-{n}"))
        .find(|candidate| !taken(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_of_plain_names() {
        assert_eq!(slug("My Holiday Cam"), "my-holiday-cam");
        assert_eq!(slug("  --Bob's  channel!! "), "bob-s-channel");
        assert_eq!(slug("Ünïcode ☃ only"), "n-code-only");
        assert_eq!(slug("☃☃"), "channel");
        assert_eq!(slug(""), "channel");
        assert_eq!(slug("new channel"), "my-channel");
    }

    #[test]
    fn slug_is_bounded_and_valid() {
        let long = "a b ".repeat(1000);
        let s = slug(&long);
        assert!(s.len() <= MAX_ID_LEN);
        assert!(is_valid_channel_id(&s), "{s}");
        assert!(!s.ends_with('-'));
    }

    #[test]
    fn unique_id_appends_counters() {
        let taken = ["cam", "cam-2"];
        assert_eq!(
            unique_id("Cam", |id| taken.contains(&id)).as_deref(),
            Some("cam-3")
        );
        assert_eq!(
            unique_id("Other", |id| taken.contains(&id)).as_deref(),
            Some("other")
        );
        assert_eq!(unique_id("x", |_| true), None);
    }

    #[test]
    fn channel_id_rules() {
        assert!(is_valid_channel_id("news"));
        assert!(is_valid_channel_id("sport-1.hd_x"));
        assert!(!is_valid_channel_id(""));
        assert!(!is_valid_channel_id("News"));
        assert!(!is_valid_channel_id("a b"));
        assert!(!is_valid_channel_id("a@b"));
        assert!(!is_valid_channel_id(CREATION_USER));
        assert!(!is_valid_channel_id(&"a".repeat(65)));
    }
}
