//! Personalised channels (design.md "Personalised channel"): a channel defined as a schedule
//! of existing channels, or by a category rule, that a viewer joins like any channel; the
//! relay splices the sources at key frames into one continuous stream
//! (`media_relay::personalized`).
//!
//! Created two ways, with the same JSON definition:
//!
//! * **SIP MESSAGE** (RFC 3428) to the creation URI `sip:new-channel@<as-host>` with
//!   `Content-Type: application/json`:
//!   `{"name": "My mix", "schedule": [{"channel": "news", "seconds": 4}, ...]}` or
//!   `{"name": "All sport", "rule": {"category": "sport", "seconds": 6}}`. The AS answers
//!   `200 OK` with `Contact: <sip:<id>@<as-host:port>>`, the URI that joins the new channel
//!   (a 2xx to MESSAGE carries no body, RFC 3428 section 7). A body that is not JSON, names an
//!   unknown channel or category, has an empty schedule or bad slot lengths gets `400` with
//!   the reason in the reason phrase; another content type `415` with `Accept`; a MESSAGE to
//!   any other user `404`.
//! * **HTTP** `POST /api/channels` with `"kind": "personalized"` (or a `schedule`/`rule`):
//!   `201` with the channel, its URI and its schedule. `GET /api/channels/{id}/personalized`
//!   shows each relay's splicer (source on air, switches).
//!
//! Either way the channel is stored with kind `personalized` (owner: the MESSAGE's From AoR)
//! and its definition ([`Stored`], so an AS restarted on the same database makes it again),
//! listed in `GET /api/channels` and in the `iptv-channels` NOTIFY, joined by INVITE, and
//! removed with `DELETE /api/channels/{id}` (viewers get a BYE). A source channel deleted
//! (or a personal source whose owner hangs up) leaves the schedule; a personalised channel
//! left without any slot is deleted. A rule expands, when the
//! channel is made, to the category's channels that exist (configured `[categories]`), each
//! on air for the rule's `seconds` (default [`DEFAULT_RULE_SECS`]).
//!
//! This module holds the pure parts: the definition, its parsing and checks, the expansion of
//! a rule. The service glue is in `tu/personalized.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Body type of a MESSAGE that defines a channel.
pub const CONTENT_TYPE: &str = "application/json";

/// Slot length of a category rule without `seconds`.
pub const DEFAULT_RULE_SECS: f64 = 10.0;

/// Most slots (the relay's limit).
pub const MAX_SLOTS: usize = media_relay::personalized::MAX_SLOTS;

/// Largest definition body read.
pub const MAX_BODY: usize = 16 * 1024;

/// One slot: `channel` on air for `seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotDef {
    /// Source channel id.
    pub channel: String,
    /// Seconds on air ([`media_relay::personalized::MIN_SLOT_SECS`] to
    /// [`media_relay::personalized::MAX_SLOT_SECS`]).
    pub seconds: f64,
}

/// A category rule: the category's channels in turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Category name (a key of the `[categories]` configuration table).
    pub category: String,
    /// Seconds per channel (default [`DEFAULT_RULE_SECS`]).
    #[serde(default)]
    pub seconds: Option<f64>,
}

/// What a personalised channel is made of (MESSAGE body, HTTP body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// Channel id; a unique slug of `name` when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Human-readable name.
    pub name: String,
    /// `"personalized"` if given (lets the HTTP body say so).
    #[serde(default)]
    pub kind: Option<String>,
    /// Slots, repeating.
    #[serde(default)]
    pub schedule: Option<Vec<SlotDef>>,
    /// Or a category rule.
    #[serde(default)]
    pub rule: Option<Rule>,
}

/// What a creation answers (HTTP `201` body).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Created {
    /// The new channel as listed.
    pub channel: crate::service::channel_list::ChannelEntry,
    /// Its id.
    pub id: String,
    /// The URI that joins it (`sip:<id>@<domain>`).
    pub uri: String,
    /// Its slots, a rule expanded.
    pub schedule: Vec<SlotDef>,
    /// The relays that splice it.
    pub relays: Vec<String>,
}

/// A personalised channel's splicer at one relay (`GET /api/channels/{id}/personalized`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelayStatus {
    /// The relay (`relay-0`, ...).
    pub relay: String,
    /// Source on air, switches, packets.
    #[serde(flatten)]
    pub stats: media_relay::personalized::PersonalizedStats,
}

/// Why a definition is refused; the text is the SIP reason phrase / HTTP error (all 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    /// Not JSON, or not the expected object.
    #[error("Bad JSON: {0}")]
    BadJson(String),
    /// Body too large.
    #[error("Body too large")]
    TooLarge,
    /// Neither a schedule nor a rule, or both.
    #[error("Need one of schedule or rule")]
    NoSchedule,
    /// The schedule has no slot.
    #[error("Empty schedule")]
    EmptySchedule,
    /// More than [`MAX_SLOTS`] slots.
    #[error("Too many slots")]
    TooManySlots,
    /// A slot length out of range.
    #[error("Bad slot length for {0}")]
    BadSeconds(String),
    /// A source that is not a channel.
    #[error("Unknown channel {0}")]
    UnknownChannel(String),
    /// A source that cannot be one (another personalised channel, the channel itself).
    #[error("Channel {0} cannot be a source")]
    BadSource(String),
    /// A category that is not configured.
    #[error("Unknown category {0}")]
    UnknownCategory(String),
    /// A category without any existing channel.
    #[error("No channels in category {0}")]
    EmptyCategory(String),
    /// A `kind` other than `personalized`.
    #[error("Kind must be personalized")]
    BadKind,
}

/// A string safe in a SIP reason phrase (RFC 3261 section 25.1: no CR/LF, no controls),
/// at most 120 bytes.
fn phrase(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > 120 {
        let mut cut = 120;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

impl DefinitionError {
    /// The SIP reason phrase (no CR/LF or control characters, bounded).
    pub fn reason_phrase(&self) -> String {
        phrase(&self.to_string())
    }
}

/// Parses a MESSAGE/HTTP body.
pub fn parse(body: &[u8]) -> Result<Definition, DefinitionError> {
    if body.len() > MAX_BODY {
        return Err(DefinitionError::TooLarge);
    }
    let def: Definition = serde_json::from_slice(body)
        .map_err(|e| DefinitionError::BadJson(phrase(&e.to_string())))?;
    check_shape(&def)?;
    Ok(def)
}

/// The checks that need no catalogue: kind, one of schedule/rule, slot count and lengths.
pub fn check_shape(def: &Definition) -> Result<(), DefinitionError> {
    use media_relay::personalized::{MAX_SLOT_SECS, MIN_SLOT_SECS};
    if def.kind.as_deref().is_some_and(|k| k != "personalized") {
        return Err(DefinitionError::BadKind);
    }
    let ok_secs = |s: f64| s.is_finite() && (MIN_SLOT_SECS..=MAX_SLOT_SECS).contains(&s);
    match (&def.schedule, &def.rule) {
        (Some(_), Some(_)) | (None, None) => Err(DefinitionError::NoSchedule),
        (Some(s), None) => {
            if s.is_empty() {
                return Err(DefinitionError::EmptySchedule);
            }
            if s.len() > MAX_SLOTS {
                return Err(DefinitionError::TooManySlots);
            }
            match s.iter().find(|slot| !ok_secs(slot.seconds)) {
                Some(slot) => Err(DefinitionError::BadSeconds(phrase(&slot.channel))),
                None => Ok(()),
            }
        }
        (None, Some(r)) => match r.seconds {
            Some(x) if !ok_secs(x) => Err(DefinitionError::BadSeconds(phrase(&r.category))),
            _ => Ok(()),
        },
    }
}

/// The definition's slots: the schedule as given, or the rule's category expanded to the
/// channels of `categories[category]` that `exists` knows, in the configured order.
pub fn expand(
    def: &Definition,
    categories: &BTreeMap<String, Vec<String>>,
    exists: impl Fn(&str) -> bool,
) -> Result<Vec<SlotDef>, DefinitionError> {
    check_shape(def)?;
    if let Some(s) = &def.schedule {
        return Ok(s.clone());
    }
    let Some(rule) = &def.rule else {
        return Err(DefinitionError::NoSchedule);
    };
    let members = categories
        .get(&rule.category)
        .ok_or_else(|| DefinitionError::UnknownCategory(phrase(&rule.category)))?;
    let seconds = rule.seconds.unwrap_or(DEFAULT_RULE_SECS);
    let slots: Vec<SlotDef> = members
        .iter()
        .filter(|c| exists(c))
        .take(MAX_SLOTS)
        .map(|c| SlotDef {
            channel: c.clone(),
            seconds,
        })
        .collect();
    if slots.is_empty() {
        return Err(DefinitionError::EmptyCategory(phrase(&rule.category)));
    }
    Ok(slots)
}

/// What the store keeps of a personalised channel (its row's `definition` column, JSON):
/// the definition as created, and the schedule in force (a rule expanded when the channel
/// was made, minus the slots of sources deleted since). Start-up re-creates the channel
/// on the relays from `schedule`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    /// The definition as received (MESSAGE or HTTP body).
    pub definition: Definition,
    /// The slots in force.
    pub schedule: Vec<SlotDef>,
}

impl Stored {
    /// The stored text.
    pub fn to_json(&self) -> String {
        // A struct of strings and finite numbers always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads the stored text; `BadJson` for text this version cannot read.
    pub fn from_json(s: &str) -> Result<Self, DefinitionError> {
        serde_json::from_str(s).map_err(|e| DefinitionError::BadJson(phrase(&e.to_string())))
    }

    /// Drops every slot of `source`; `true` if there was one.
    pub fn remove_source(&mut self, source: &str) -> bool {
        let before = self.schedule.len();
        self.schedule.retain(|s| s.channel != source);
        self.schedule.len() != before
    }

    /// The distinct sources of the schedule, in order of first appearance.
    pub fn sources(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for s in &self.schedule {
            if !v.contains(&s.channel) {
                v.push(s.channel.clone());
            }
        }
        v
    }
}

/// The relay's spec for channel `id` made of `slots`.
pub fn relay_spec(id: &str, slots: &[SlotDef]) -> media_relay::personalized::PersonalizedSpec {
    media_relay::personalized::PersonalizedSpec {
        channel: id.into(),
        schedule: slots
            .iter()
            .map(|s| media_relay::personalized::Slot {
                channel: s.channel.as_str().into(),
                seconds: s.seconds,
            })
            .collect(),
        media: media_relay::fcc::MediaKind::Auto,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats() -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([(
            "sport".to_owned(),
            vec!["sport1".to_owned(), "gone".to_owned(), "sport2".to_owned()],
        )])
    }

    #[test]
    fn schedule_body_parses() {
        let d = parse(
            br#"{"name":"My mix","schedule":[{"channel":"news","seconds":4},{"channel":"sport","seconds":2.5}]}"#,
        )
        .unwrap();
        assert_eq!(d.name, "My mix");
        let slots = expand(&d, &cats(), |_| true).unwrap();
        assert_eq!(slots.len(), 2);
        assert_eq!(slots[1].seconds, 2.5);
        let spec = relay_spec("my-mix", &slots);
        assert_eq!(spec.channel.as_str(), "my-mix");
        assert_eq!(spec.schedule[0].channel.as_str(), "news");
    }

    #[test]
    fn rule_expands_to_existing_members_with_default_length() {
        let d = parse(br#"{"name":"All sport","rule":{"category":"sport"}}"#).unwrap();
        let slots = expand(&d, &cats(), |c| c != "gone").unwrap();
        assert_eq!(
            slots,
            vec![
                SlotDef {
                    channel: "sport1".into(),
                    seconds: DEFAULT_RULE_SECS
                },
                SlotDef {
                    channel: "sport2".into(),
                    seconds: DEFAULT_RULE_SECS
                },
            ]
        );
        let d = parse(br#"{"name":"x","rule":{"category":"sport","seconds":3}}"#).unwrap();
        assert_eq!(expand(&d, &cats(), |_| true).unwrap()[0].seconds, 3.0);
        let d = parse(br#"{"name":"x","rule":{"category":"film"}}"#).unwrap();
        assert_eq!(
            expand(&d, &cats(), |_| true).unwrap_err(),
            DefinitionError::UnknownCategory("film".into())
        );
        assert_eq!(
            expand(&d.clone(), &cats(), |_| true)
                .unwrap_err()
                .reason_phrase(),
            "Unknown category film"
        );
        let d = parse(br#"{"name":"x","rule":{"category":"sport"}}"#).unwrap();
        assert_eq!(
            expand(&d, &cats(), |_| false).unwrap_err(),
            DefinitionError::EmptyCategory("sport".into())
        );
    }

    #[test]
    fn stored_round_trips_and_loses_a_source() {
        let d = parse(br#"{"name":"All sport","rule":{"category":"sport","seconds":3}}"#).unwrap();
        let schedule = expand(&d, &cats(), |_| true).unwrap();
        let mut st = Stored {
            definition: d,
            schedule,
        };
        let back = Stored::from_json(&st.to_json()).unwrap();
        assert_eq!(back, st);
        assert_eq!(st.sources(), vec!["sport1", "gone", "sport2"]);
        assert!(st.remove_source("gone"));
        assert!(!st.remove_source("gone"));
        assert_eq!(st.sources(), vec!["sport1", "sport2"]);
        assert!(Stored::from_json("{}").is_err());
        assert!(Stored::from_json("not json").is_err());
    }

    #[test]
    fn bad_bodies_have_reasons() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "Bad JSON"),
            (b"{\"name\":\"x\"}", "Need one of schedule or rule"),
            (b"{\"name\":\"x\",\"schedule\":[]}", "Empty schedule"),
            (
                b"{\"name\":\"x\",\"schedule\":[{\"channel\":\"a\",\"seconds\":0}]}",
                "Bad slot length for a",
            ),
            (
                b"{\"name\":\"x\",\"schedule\":[{\"channel\":\"a\",\"seconds\":1}],\"rule\":{\"category\":\"s\"}}",
                "Need one of schedule or rule",
            ),
            (
                b"{\"name\":\"x\",\"kind\":\"producer\",\"schedule\":[{\"channel\":\"a\",\"seconds\":1}]}",
                "Kind must be personalized",
            ),
            (b"{\"name\":\"x\",\"bogus\":1}", "Bad JSON"),
            (b"[1,2]", "Bad JSON"),
        ];
        for (body, want) in cases {
            let e = parse(body).unwrap_err();
            let p = e.reason_phrase();
            assert!(
                p.starts_with(want),
                "{p:?} for {:?}",
                String::from_utf8_lossy(body)
            );
            assert!(!p.contains('\r') && !p.contains('\n') && p.len() <= 120);
        }
        let many = format!(
            "{{\"name\":\"x\",\"schedule\":[{}]}}",
            vec!["{\"channel\":\"a\",\"seconds\":1}"; MAX_SLOTS + 1].join(",")
        );
        assert_eq!(
            parse(many.as_bytes()).unwrap_err(),
            DefinitionError::TooManySlots
        );
        assert_eq!(
            parse(&vec![b' '; MAX_BODY + 1]).unwrap_err(),
            DefinitionError::TooLarge
        );
    }
}
