//! The overlay configuration document (RFC 6940 section 11.1): the XML every peer fetches
//! before it joins, naming the overlay, its topology, its root certificate, the enrollment
//! server, the bootstrap peers, the link and CHORD-RELOAD parameters and the kinds with their
//! data models and access policies.
//!
//! [`OverlayConfig::to_xml`] writes the document in the RFC's `config-base` and `config-chord`
//! namespaces; [`OverlayConfig::from_xml`] reads it back strictly (quick-xml events): a
//! missing required element or attribute, a number that does not parse, a topology other than
//! CHORD-RELOAD, a Node-ID length other than 16, a root certificate that is not base64, or a
//! data model / access policy the RFC does not define is a [`ConfigError`] naming the element.
//! Elements of other namespaces (extensions) are skipped unless listed as
//! `mandatory-extension`, which this implementation refuses as RFC 6940 says (it supports
//! none). The `<signature>` over the configuration (section 11.1.1) is not written or checked
//! here: in the testbed the document comes from the dev CA's own enrollment server over TLS.

use std::fmt::Write as _;
use std::net::SocketAddr;

use base64::Engine as _;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// The base namespace.
pub const NS_BASE: &str = "urn:ietf:params:xml:ns:p2p:config-base";
/// The CHORD-RELOAD namespace.
pub const NS_CHORD: &str = "urn:ietf:params:xml:ns:p2p:config-chord";

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not well-formed XML.
    #[error("XML: {0}")]
    Xml(String),
    /// A required element or attribute is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A value does not parse or is not allowed.
    #[error("bad {what}: {value:?}")]
    Bad {
        /// Element or attribute.
        what: &'static str,
        /// The text found.
        value: String,
    },
    /// A mandatory extension this implementation does not support.
    #[error("unsupported mandatory extension {0}")]
    MandatoryExtension(String),
}

/// Data models (RFC 6940 section 7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataModel {
    /// One value.
    Single,
    /// Indexed values.
    Array,
    /// Keyed values.
    Dictionary,
}

/// Access control policies (RFC 6940 section 7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessPolicy {
    /// Resource-ID = hash of the signer's user name.
    UserMatch,
    /// Resource-ID = hash of the signer's Node-ID.
    NodeMatch,
    /// USER-MATCH, and dictionary keys are the signer's Node-ID.
    UserNodeMatch,
    /// Resource-ID = hash of Node-ID and an index below `max-node-multiple`.
    NodeMultiple,
}

impl DataModel {
    fn as_str(self) -> &'static str {
        match self {
            DataModel::Single => "SINGLE",
            DataModel::Array => "ARRAY",
            DataModel::Dictionary => "DICTIONARY",
        }
    }
    fn parse(s: &str) -> Result<Self, ConfigError> {
        Ok(match s {
            "SINGLE" => DataModel::Single,
            "ARRAY" => DataModel::Array,
            "DICTIONARY" => DataModel::Dictionary,
            _ => return bad("data-model", s),
        })
    }
}

impl AccessPolicy {
    fn as_str(self) -> &'static str {
        match self {
            AccessPolicy::UserMatch => "USER-MATCH",
            AccessPolicy::NodeMatch => "NODE-MATCH",
            AccessPolicy::UserNodeMatch => "USER-NODE-MATCH",
            AccessPolicy::NodeMultiple => "NODE-MULTIPLE",
        }
    }
    fn parse(s: &str) -> Result<Self, ConfigError> {
        Ok(match s {
            "USER-MATCH" => AccessPolicy::UserMatch,
            "NODE-MATCH" => AccessPolicy::NodeMatch,
            "USER-NODE-MATCH" => AccessPolicy::UserNodeMatch,
            "NODE-MULTIPLE" => AccessPolicy::NodeMultiple,
            _ => return bad("access-control", s),
        })
    }
}

/// How a kind is named: the registered name or a numeric id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindName {
    /// `name="SIP-REGISTRATION"`.
    Name(String),
    /// `id="4026531841"`.
    Id(u32),
}

/// One `<kind>` of a `<kind-block>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindConfig {
    /// Name or id.
    pub kind: KindName,
    /// Data model.
    pub data_model: DataModel,
    /// Access control.
    pub access_control: AccessPolicy,
    /// Most values per resource.
    pub max_count: u32,
    /// Largest value in bytes.
    pub max_size: u32,
    /// For NODE-MULTIPLE.
    pub max_node_multiple: Option<u32>,
}

/// The document (the fields this project uses; module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayConfig {
    /// `instance-name`: the overlay name.
    pub instance_name: String,
    /// `sequence`: bumped on every change.
    pub sequence: u16,
    /// DER of the root certificate(s).
    pub root_certs: Vec<Vec<u8>>,
    /// Enrollment server URLs.
    pub enrollment_servers: Vec<String>,
    /// Whether self-signed certificates are allowed.
    pub self_signed_permitted: bool,
    /// Bootstrap peers.
    pub bootstrap: Vec<SocketAddr>,
    /// `no-ice`: links go straight to host candidates.
    pub no_ice: bool,
    /// `max-message-size`.
    pub max_message_size: u32,
    /// `initial-ttl`.
    pub initial_ttl: u8,
    /// `overlay-link-protocol` (TLS).
    pub link_protocol: String,
    /// `chord:chord-ping-interval`, seconds.
    pub chord_ping_interval: u32,
    /// `chord:chord-update-interval`, seconds.
    pub chord_update_interval: u32,
    /// `chord:chord-reactive`.
    pub chord_reactive: bool,
    /// Required kinds.
    pub kinds: Vec<KindConfig>,
}

fn bad<T>(what: &'static str, value: &str) -> Result<T, ConfigError> {
    Err(ConfigError::Bad {
        what,
        value: value.to_owned(),
    })
}

fn esc(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

impl OverlayConfig {
    /// The testbed's document for `overlay`: one root, the given enrollment server and
    /// bootstrap peers, no ICE, TLS links, SIP-REGISTRATION and the project's two kinds
    /// (channel → relays, channel directory).
    #[must_use]
    pub fn testbed(
        overlay: &str,
        root_der: Vec<u8>,
        enrollment: &str,
        bootstrap: Vec<SocketAddr>,
    ) -> Self {
        Self {
            instance_name: overlay.to_owned(),
            sequence: 1,
            root_certs: vec![root_der],
            enrollment_servers: vec![enrollment.to_owned()],
            self_signed_permitted: false,
            bootstrap,
            no_ice: true,
            max_message_size: 5_000_000,
            initial_ttl: 100,
            link_protocol: "TLS".into(),
            chord_ping_interval: 30,
            chord_update_interval: 60,
            chord_reactive: true,
            kinds: vec![
                KindConfig {
                    kind: KindName::Name("SIP-REGISTRATION".into()),
                    data_model: DataModel::Dictionary,
                    access_control: AccessPolicy::UserNodeMatch,
                    max_count: 10,
                    max_size: 2048,
                    max_node_multiple: None,
                },
                KindConfig {
                    kind: KindName::Id(0xf000_0001),
                    data_model: DataModel::Dictionary,
                    access_control: AccessPolicy::UserNodeMatch,
                    max_count: 64,
                    max_size: 512,
                    max_node_multiple: None,
                },
                KindConfig {
                    kind: KindName::Id(0xf000_0002),
                    data_model: DataModel::Dictionary,
                    access_control: AccessPolicy::UserNodeMatch,
                    max_count: 10_000,
                    max_size: 1024,
                    max_node_multiple: None,
                },
            ],
        }
    }

    /// The XML document.
    #[must_use]
    pub fn to_xml(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut s = String::new();
        let _ = writeln!(s, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        let _ = writeln!(s, r#"<overlay xmlns="{NS_BASE}" xmlns:chord="{NS_CHORD}">"#);
        let _ = writeln!(
            s,
            r#"  <configuration instance-name="{}" sequence="{}">"#,
            esc(&self.instance_name),
            self.sequence
        );
        s.push_str("    <topology-plugin>CHORD-RELOAD</topology-plugin>\n");
        s.push_str("    <node-id-length>16</node-id-length>\n");
        for c in &self.root_certs {
            let _ = writeln!(s, "    <root-cert>{}</root-cert>", b64.encode(c));
        }
        for e in &self.enrollment_servers {
            let _ = writeln!(s, "    <enrollment-server>{}</enrollment-server>", esc(e));
        }
        let _ = writeln!(
            s,
            "    <self-signed-permitted>{}</self-signed-permitted>",
            self.self_signed_permitted
        );
        for b in &self.bootstrap {
            let _ = writeln!(
                s,
                r#"    <bootstrap-node address="{}" port="{}"/>"#,
                b.ip(),
                b.port()
            );
        }
        let _ = writeln!(s, "    <no-ice>{}</no-ice>", self.no_ice);
        let _ = writeln!(
            s,
            "    <max-message-size>{}</max-message-size>",
            self.max_message_size
        );
        let _ = writeln!(s, "    <initial-ttl>{}</initial-ttl>", self.initial_ttl);
        let _ = writeln!(
            s,
            "    <overlay-link-protocol>{}</overlay-link-protocol>",
            esc(&self.link_protocol)
        );
        let _ = writeln!(
            s,
            "    <chord:chord-ping-interval>{}</chord:chord-ping-interval>",
            self.chord_ping_interval
        );
        let _ = writeln!(
            s,
            "    <chord:chord-update-interval>{}</chord:chord-update-interval>",
            self.chord_update_interval
        );
        let _ = writeln!(
            s,
            "    <chord:chord-reactive>{}</chord:chord-reactive>",
            self.chord_reactive
        );
        s.push_str("    <required-kinds>\n");
        for k in &self.kinds {
            s.push_str("      <kind-block>\n");
            match &k.kind {
                KindName::Name(n) => {
                    let _ = writeln!(s, r#"        <kind name="{}">"#, esc(n));
                }
                KindName::Id(i) => {
                    let _ = writeln!(s, r#"        <kind id="{i}">"#);
                }
            }
            let _ = writeln!(
                s,
                "          <data-model>{}</data-model>",
                k.data_model.as_str()
            );
            let _ = writeln!(
                s,
                "          <access-control>{}</access-control>",
                k.access_control.as_str()
            );
            if let Some(m) = k.max_node_multiple {
                let _ = writeln!(s, "          <max-node-multiple>{m}</max-node-multiple>");
            }
            let _ = writeln!(s, "          <max-count>{}</max-count>", k.max_count);
            let _ = writeln!(s, "          <max-size>{}</max-size>", k.max_size);
            s.push_str("        </kind>\n      </kind-block>\n");
        }
        s.push_str("    </required-kinds>\n  </configuration>\n</overlay>\n");
        s
    }

    /// Reads a document (module docs for what is refused).
    pub fn from_xml(xml: &str) -> Result<Self, ConfigError> {
        let mut p = Parser::new(xml);
        p.run()
    }
}

/// Partial values while parsing.
#[derive(Default)]
struct Draft {
    instance_name: Option<String>,
    sequence: Option<u16>,
    topology: Option<String>,
    node_id_length: Option<u32>,
    root_certs: Vec<Vec<u8>>,
    enrollment_servers: Vec<String>,
    self_signed_permitted: Option<bool>,
    bootstrap: Vec<SocketAddr>,
    no_ice: Option<bool>,
    max_message_size: Option<u32>,
    initial_ttl: Option<u8>,
    link_protocol: Option<String>,
    chord_ping_interval: Option<u32>,
    chord_update_interval: Option<u32>,
    chord_reactive: Option<bool>,
    kinds: Vec<KindConfig>,
}

#[derive(Default)]
struct KindDraft {
    kind: Option<KindName>,
    data_model: Option<DataModel>,
    access_control: Option<AccessPolicy>,
    max_count: Option<u32>,
    max_size: Option<u32>,
    max_node_multiple: Option<u32>,
}

struct Parser<'a> {
    reader: Reader<&'a [u8]>,
    /// Element path (local names with prefix as written).
    path: Vec<String>,
    text: String,
    draft: Draft,
    kind: Option<KindDraft>,
    saw_overlay: bool,
}

fn num<T: std::str::FromStr>(what: &'static str, s: &str) -> Result<T, ConfigError> {
    s.trim().parse().or_else(|_| bad(what, s))
}

fn boolean(what: &'static str, s: &str) -> Result<bool, ConfigError> {
    match s.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => bad(what, s),
    }
}

fn attr(e: &BytesStart<'_>, name: &[u8]) -> Result<Option<String>, ConfigError> {
    for a in e.attributes() {
        let a = a.map_err(|err| ConfigError::Xml(err.to_string()))?;
        if a.key.as_ref() == name {
            let v = a
                .unescape_value()
                .map_err(|err| ConfigError::Xml(err.to_string()))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

impl<'a> Parser<'a> {
    fn new(xml: &'a str) -> Self {
        let mut reader = Reader::from_str(xml);
        reader.config_mut().trim_text(true);
        Self {
            reader,
            path: Vec::new(),
            text: String::new(),
            draft: Draft::default(),
            kind: None,
            saw_overlay: false,
        }
    }

    fn run(&mut self) -> Result<OverlayConfig, ConfigError> {
        loop {
            let ev = self
                .reader
                .read_event()
                .map_err(|e| ConfigError::Xml(e.to_string()))?;
            match ev {
                Event::Start(e) => {
                    self.start(&e)?;
                    self.path
                        .push(String::from_utf8_lossy(e.name().as_ref()).into_owned());
                    self.text.clear();
                }
                Event::Empty(e) => {
                    self.start(&e)?;
                    self.path
                        .push(String::from_utf8_lossy(e.name().as_ref()).into_owned());
                    self.text.clear();
                    self.end()?;
                    self.path.pop();
                }
                Event::Text(t) => {
                    let t = t.unescape().map_err(|e| ConfigError::Xml(e.to_string()))?;
                    self.text.push_str(&t);
                }
                Event::End(_) => {
                    self.end()?;
                    self.path.pop();
                    self.text.clear();
                }
                Event::Eof => break,
                _ => {}
            }
            if self.path.len() > 16 {
                return Err(ConfigError::Xml("nesting deeper than 16".into()));
            }
        }
        if !self.saw_overlay {
            return Err(ConfigError::Missing("overlay"));
        }
        self.finish()
    }

    fn start(&mut self, e: &BytesStart<'_>) -> Result<(), ConfigError> {
        let name = e.name();
        match (self.path.len(), name.as_ref()) {
            (0, b"overlay") => self.saw_overlay = true,
            (0, other) => return bad("root element", &String::from_utf8_lossy(other)),
            (1, b"configuration") => {
                self.draft.instance_name = attr(e, b"instance-name")?;
                if let Some(s) = attr(e, b"sequence")? {
                    self.draft.sequence = Some(num("sequence", &s)?);
                }
            }
            (2, b"bootstrap-node") => {
                let a =
                    attr(e, b"address")?.ok_or(ConfigError::Missing("bootstrap-node address"))?;
                let p = attr(e, b"port")?.ok_or(ConfigError::Missing("bootstrap-node port"))?;
                let ip: std::net::IpAddr = num("bootstrap-node address", &a)?;
                let port: u16 = num("bootstrap-node port", &p)?;
                self.draft.bootstrap.push(SocketAddr::new(ip, port));
            }
            (4, b"kind") => {
                let mut k = KindDraft::default();
                if let Some(n) = attr(e, b"name")? {
                    k.kind = Some(KindName::Name(n));
                } else if let Some(i) = attr(e, b"id")? {
                    k.kind = Some(KindName::Id(num("kind id", &i)?));
                }
                self.kind = Some(k);
            }
            _ => {}
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), ConfigError> {
        let Some(name) = self.path.last().cloned() else {
            return Ok(());
        };
        let text = self.text.trim().to_owned();
        let depth = self.path.len();
        let d = &mut self.draft;
        match (depth, name.as_str()) {
            (3, "topology-plugin") => d.topology = Some(text),
            (3, "node-id-length") => d.node_id_length = Some(num("node-id-length", &text)?),
            (3, "root-cert") => {
                let compact: String = text.split_whitespace().collect();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(compact.as_bytes())
                    .or_else(|_| bad("root-cert", &text))?;
                d.root_certs.push(der);
            }
            (3, "enrollment-server") => d.enrollment_servers.push(text),
            (3, "self-signed-permitted") => {
                d.self_signed_permitted = Some(boolean("self-signed-permitted", &text)?);
            }
            (3, "no-ice") => d.no_ice = Some(boolean("no-ice", &text)?),
            (3, "max-message-size") => {
                d.max_message_size = Some(num("max-message-size", &text)?);
            }
            (3, "initial-ttl") => d.initial_ttl = Some(num("initial-ttl", &text)?),
            (3, "overlay-link-protocol") => d.link_protocol = Some(text),
            (3, "chord:chord-ping-interval") => {
                d.chord_ping_interval = Some(num("chord-ping-interval", &text)?);
            }
            (3, "chord:chord-update-interval") => {
                d.chord_update_interval = Some(num("chord-update-interval", &text)?);
            }
            (3, "chord:chord-reactive") => {
                d.chord_reactive = Some(boolean("chord-reactive", &text)?);
            }
            (3, "mandatory-extension") => return Err(ConfigError::MandatoryExtension(text)),
            (6, field) => {
                if let Some(k) = self.kind.as_mut() {
                    match field {
                        "data-model" => k.data_model = Some(DataModel::parse(&text)?),
                        "access-control" => k.access_control = Some(AccessPolicy::parse(&text)?),
                        "max-count" => k.max_count = Some(num("max-count", &text)?),
                        "max-size" => k.max_size = Some(num("max-size", &text)?),
                        "max-node-multiple" => {
                            k.max_node_multiple = Some(num("max-node-multiple", &text)?);
                        }
                        _ => {}
                    }
                }
            }
            (5, "kind") => {
                let k = self.kind.take().ok_or(ConfigError::Missing("kind"))?;
                let access_control = k
                    .access_control
                    .ok_or(ConfigError::Missing("kind access-control"))?;
                if access_control == AccessPolicy::NodeMultiple && k.max_node_multiple.is_none() {
                    return Err(ConfigError::Missing("kind max-node-multiple"));
                }
                d.kinds.push(KindConfig {
                    kind: k.kind.ok_or(ConfigError::Missing("kind name or id"))?,
                    data_model: k
                        .data_model
                        .ok_or(ConfigError::Missing("kind data-model"))?,
                    access_control,
                    max_count: k.max_count.ok_or(ConfigError::Missing("kind max-count"))?,
                    max_size: k.max_size.ok_or(ConfigError::Missing("kind max-size"))?,
                    max_node_multiple: k.max_node_multiple,
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<OverlayConfig, ConfigError> {
        let d = std::mem::take(&mut self.draft);
        let topology = d.topology.ok_or(ConfigError::Missing("topology-plugin"))?;
        if topology != "CHORD-RELOAD" {
            return bad("topology-plugin", &topology);
        }
        match d.node_id_length {
            Some(16) => {}
            Some(n) => return bad("node-id-length", &n.to_string()),
            None => return Err(ConfigError::Missing("node-id-length")),
        }
        let instance_name = d
            .instance_name
            .filter(|n| !n.is_empty())
            .ok_or(ConfigError::Missing("configuration instance-name"))?;
        if d.root_certs.is_empty() && d.self_signed_permitted != Some(true) {
            return Err(ConfigError::Missing("root-cert"));
        }
        Ok(OverlayConfig {
            instance_name,
            sequence: d
                .sequence
                .ok_or(ConfigError::Missing("configuration sequence"))?,
            root_certs: d.root_certs,
            enrollment_servers: d.enrollment_servers,
            self_signed_permitted: d.self_signed_permitted.unwrap_or(false),
            bootstrap: d.bootstrap,
            no_ice: d.no_ice.unwrap_or(false),
            max_message_size: d.max_message_size.unwrap_or(5_000_000),
            initial_ttl: d.initial_ttl.unwrap_or(100),
            link_protocol: d.link_protocol.unwrap_or_else(|| "TLS".into()),
            chord_ping_interval: d.chord_ping_interval.unwrap_or(300),
            chord_update_interval: d.chord_update_interval.unwrap_or(600),
            chord_reactive: d.chord_reactive.unwrap_or(true),
            kinds: d.kinds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> OverlayConfig {
        OverlayConfig::testbed(
            "iptv.test",
            vec![0x30, 0x82, 0x01, 0x02, 0xff],
            "https://127.0.0.1:6443/enroll",
            vec![
                "127.0.0.1:6084".parse().unwrap(),
                "[::1]:6085".parse().unwrap(),
            ],
        )
    }

    #[test]
    fn round_trip() {
        let c = sample();
        let xml = c.to_xml();
        assert!(xml.contains(r#"<kind name="SIP-REGISTRATION">"#), "{xml}");
        assert!(xml.contains(r#"<kind id="4026531841">"#), "{xml}");
        assert_eq!(OverlayConfig::from_xml(&xml).unwrap(), c);
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        let xml = sample().to_xml();
        let cases = [
            (xml.replace("CHORD-RELOAD", "KADEMLIA"), "topology-plugin"),
            (
                xml.replace("<node-id-length>16", "<node-id-length>20"),
                "node-id-length",
            ),
            (xml.replace(r#" sequence="1""#, ""), "sequence"),
            (
                xml.replace("<max-count>10<", "<max-count>ten<"),
                "max-count",
            ),
            (xml.replace(">DICTIONARY<", ">HASHMAP<"), "data-model"),
            (xml.replace("USER-NODE-MATCH", "ANYONE"), "access-control"),
            (xml.replace(r#"port="6084""#, r#"port="70000""#), "port"),
            (xml.replace("<root-cert>", "<root-cert>!!"), "root-cert"),
            (
                xml.replace(
                    "</configuration>",
                    "<mandatory-extension>urn:x</mandatory-extension></configuration>",
                ),
                "mandatory",
            ),
            ("<overlay>".to_owned(), "XML"),
            ("<other/>".to_owned(), "root"),
            (String::new(), "overlay"),
        ];
        for (doc, why) in cases {
            let e = OverlayConfig::from_xml(&doc).expect_err(why).to_string();
            assert!(
                e.to_lowercase().contains(&why.to_lowercase()) || why == "XML",
                "{why}: {e}"
            );
        }
    }

    #[test]
    fn extensions_of_other_namespaces_are_skipped() {
        let xml = sample().to_xml().replace(
            "<no-ice>",
            "<ext:foo xmlns:ext=\"urn:example\">x</ext:foo><no-ice>",
        );
        assert_eq!(OverlayConfig::from_xml(&xml).unwrap(), sample());
    }
}
