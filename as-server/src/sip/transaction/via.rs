//! The top Via as the transaction layer needs it: branch and sent-by for matching (RFC 3261
//! 17.1.3, 17.2.3), `received`/`rport` stamping on incoming requests (RFC 3261 18.2.1,
//! RFC 3581 section 4) and the response address (RFC 3261 18.2.2, RFC 3581 section 5).
//!
//! It reads the raw top Via value itself so the layer depends only on the codec's `Headers`.

use std::net::{IpAddr, SocketAddr};

use super::Transport;
use crate::sip::{HeaderName, Request, Response};

/// The parsed top Via header field value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopVia {
    /// Transport token (`UDP`, `TCP`, `TLS`, ...), as written.
    pub transport: String,
    /// sent-by host (IPv6 without brackets).
    pub host: String,
    /// sent-by port.
    pub port: Option<u16>,
    /// `branch` parameter.
    pub branch: Option<String>,
    /// `received` parameter.
    pub received: Option<String>,
    /// `rport` parameter: `Some(None)` when present without a value (RFC 3581 request).
    pub rport: Option<Option<u16>>,
    /// `maddr` parameter.
    pub maddr: Option<String>,
    /// All parameters in order, (name, value).
    pub params: Vec<(String, Option<String>)>,
}

impl TopVia {
    /// Parses one Via element (`SIP/2.0/UDP host:port;params`).
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        let value = first_element(value);
        let (head, params) = match value.find(';') {
            Some(i) => (&value[..i], &value[i + 1..]),
            None => (value, ""),
        };
        let mut parts = head.splitn(3, '/');
        let proto = parts.next()?.trim();
        let version = parts.next()?.trim();
        if !proto.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return None;
        }
        let mut rest = parts.next()?.split_whitespace();
        let transport = rest.next()?.to_owned();
        let sent_by = rest.next()?;
        if rest.next().is_some() {
            return None;
        }
        let (host, port) = split_host_port(sent_by)?;
        let mut via = TopVia {
            transport,
            host,
            port,
            branch: None,
            received: None,
            rport: None,
            maddr: None,
            params: Vec::new(),
        };
        for p in params.split(';') {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let (name, val) = match p.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().to_owned())),
                None => (p, None),
            };
            match name.to_ascii_lowercase().as_str() {
                "branch" => via.branch = val.clone(),
                "received" => via.received = val.clone(),
                "maddr" => via.maddr = val.clone(),
                "rport" => via.rport = Some(val.as_deref().and_then(|v| v.parse().ok())),
                _ => {}
            }
            via.params.push((name.to_owned(), val));
        }
        Some(via)
    }

    /// The top Via of a request.
    #[must_use]
    pub fn of_request(request: &Request) -> Option<Self> {
        Self::parse(request.headers.get(&HeaderName::VIA)?)
    }

    /// The top Via of a response.
    #[must_use]
    pub fn of_response(response: &Response) -> Option<Self> {
        Self::parse(response.headers.get(&HeaderName::VIA)?)
    }

    /// `host[:port]` as written in the sent-by (IPv6 in brackets).
    #[must_use]
    pub fn sent_by(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }

    /// The value without `received`/`rport` (what the sender wrote), for RFC 2543 matching.
    #[must_use]
    pub fn raw_without_received(&self) -> String {
        let mut s = format!("SIP/2.0/{} {}", self.transport, self.sent_by());
        for (n, v) in &self.params {
            if n.eq_ignore_ascii_case("received") || n.eq_ignore_ascii_case("rport") {
                continue;
            }
            s.push(';');
            s.push_str(n);
            if let Some(v) = v {
                s.push('=');
                s.push_str(v);
            }
        }
        s
    }

    /// Writes the element back (`SIP/2.0/UDP host:port;params`).
    #[must_use]
    pub fn to_value(&self) -> String {
        let mut s = format!("SIP/2.0/{} {}", self.transport, self.sent_by());
        for (n, v) in &self.params {
            s.push(';');
            s.push_str(n);
            if let Some(v) = v {
                s.push('=');
                s.push_str(v);
            }
        }
        s
    }

    fn set_param(&mut self, name: &str, value: String) {
        if let Some(p) = self
            .params
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            p.1 = Some(value);
        } else {
            self.params.push((name.to_owned(), Some(value)));
        }
    }
}

/// Splits `host[:port]` (IPv6 in brackets).
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_owned(), Some(p.parse().ok()?))),
        Some(_) => None,
        None if s.is_empty() => None,
        None => Some((s.to_owned(), None)),
    }
}

/// The first element of a possibly comma-separated Via value (commas inside quotes kept).
fn first_element(value: &str) -> &str {
    let mut in_quotes = false;
    for (i, c) in value.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => return value[..i].trim(),
            _ => {}
        }
    }
    value.trim()
}

/// RFC 3261 18.2.1 and RFC 3581 4: adds `received` when the sent-by host is not the source
/// address (always when `rport` is asked), fills `rport` with the source port. Rewrites the
/// top Via of `request` and returns it, or `None` when the request has no parsable Via.
pub fn stamp_received(request: &mut Request, source: SocketAddr) -> Option<TopVia> {
    // The codec splits comma lists: `get` is the top Via element.
    let mut via = TopVia::parse(request.headers.get(&HeaderName::VIA)?)?;
    let src_ip = source.ip();
    let host_is_source = via.host.parse::<IpAddr>().is_ok_and(|ip| ip == src_ip);
    let wants_rport = via.rport.is_some();
    if !host_is_source || wants_rport {
        via.set_param("received", src_ip.to_string());
        via.received = Some(src_ip.to_string());
    }
    if wants_rport {
        via.set_param("rport", source.port().to_string());
        via.rport = Some(Some(source.port()));
    }
    if !host_is_source || wants_rport {
        request.headers.set_first(&HeaderName::VIA, via.to_value());
    }
    Some(via)
}

/// Where to send a response (RFC 3261 18.2.2, RFC 3581 5): on a reliable transport back to
/// the connection's peer; on UDP to `received` (or the source) and the `rport` when the
/// client asked for it, else the sent-by port (5060 by default).
#[must_use]
pub fn response_destination(via: &TopVia, source: SocketAddr, transport: Transport) -> SocketAddr {
    if transport.is_reliable() {
        return source;
    }
    let ip = via
        .received
        .as_deref()
        .and_then(|r| r.parse::<IpAddr>().ok())
        .or_else(|| via.host.parse::<IpAddr>().ok())
        .unwrap_or(source.ip());
    let port = match via.rport {
        Some(Some(p)) => p,
        Some(None) => source.port(),
        None => via.port.unwrap_or(transport.default_port()),
    };
    SocketAddr::new(ip, port)
}

/// On TCP/TLS, where to open a new connection for a response when the request's connection
/// has closed (RFC 3261 18.2.2): the `received` address (or the source) and the sent-by port
/// (default 5060, 5061 for TLS). `None` on UDP or when that is the source address itself.
#[must_use]
pub fn reconnect_destination(
    via: &TopVia,
    source: SocketAddr,
    transport: Transport,
) -> Option<SocketAddr> {
    if !transport.is_reliable() {
        return None;
    }
    let ip = via
        .received
        .as_deref()
        .and_then(|r| r.parse::<IpAddr>().ok())
        .unwrap_or(source.ip());
    let addr = SocketAddr::new(ip, via.port.unwrap_or(transport.default_port()));
    (addr != source).then_some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_via_forms() {
        let v =
            TopVia::parse("SIP / 2.0 / UDP 192.0.2.1:5070 ;branch=z9hG4bK77;rport, SIP/2.0/TCP b")
                .unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "192.0.2.1");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.branch.as_deref(), Some("z9hG4bK77"));
        assert_eq!(v.rport, Some(None));
        let v6 = TopVia::parse("SIP/2.0/TLS [2001:db8::9]:5061;branch=z9hG4bKx").unwrap();
        assert_eq!(v6.host, "2001:db8::9");
        assert_eq!(v6.sent_by(), "[2001:db8::9]:5061");
        assert!(TopVia::parse("SIP/3.0/UDP a").is_none());
        assert!(TopVia::parse("garbage").is_none());
    }

    #[test]
    fn destination_rules() {
        let src: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        let mut v = TopVia::parse("SIP/2.0/UDP host.example:5062;branch=z9hG4bK1").unwrap();
        assert_eq!(
            response_destination(&v, src, Transport::Udp),
            "198.51.100.7:5062".parse().unwrap()
        );
        v.rport = Some(Some(40000));
        v.received = Some("198.51.100.7".into());
        assert_eq!(response_destination(&v, src, Transport::Udp), src);
        assert_eq!(response_destination(&v, src, Transport::Tcp), src);
        assert_eq!(reconnect_destination(&v, src, Transport::Udp), None);
        assert_eq!(
            reconnect_destination(&v, src, Transport::Tcp),
            Some("198.51.100.7:5062".parse().unwrap())
        );
    }
}
