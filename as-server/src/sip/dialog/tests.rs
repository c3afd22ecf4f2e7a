//! Dialog tests: UAS creation, in-dialog matching, re-INVITE, BYE, NOTIFY building.

use super::*;
use crate::sip::Message;

fn invite() -> Request {
    let raw = "INVITE sip:news@as.example SIP/2.0\r\n\
Via: SIP/2.0/UDP pc.example:5060;branch=z9hG4bK-d1\r\n\
Record-Route: <sip:p2.example;lr>\r\n\
Record-Route: <sip:p1.example;lr>\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=from-a\r\n\
To: <sip:news@as.example>\r\n\
Call-ID: dlg-1@pc.example\r\n\
CSeq: 4711 INVITE\r\n\
Contact: <sip:alice@192.0.2.10:5062;transport=udp>\r\n\
Content-Length: 0\r\n\r\n";
    match Message::parse(raw.as_bytes()).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => unreachable!(),
    }
}

fn ok_for(req: &Request) -> Response {
    uas_response(
        req,
        StatusCode(200),
        "OK",
        "as-tag",
        "<sip:as@192.0.2.1:5060>",
    )
}

fn confirmed() -> ConfirmedDialog {
    let req = invite();
    match Dialog::uas(&req, &ok_for(&req), false).unwrap() {
        Dialog::Confirmed(d) => d,
        other => panic!("{other:?}"),
    }
}

/// Re-parses what we build, as the peer would (after the endpoint added its Via).
fn reparse(r: &Request) -> Request {
    let mut r = r.clone();
    r.headers
        .push_front(HeaderName::VIA, "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-out");
    match Message::parse(&r.to_bytes()).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => unreachable!(),
    }
}

#[test]
fn uas_dialog_from_invite_and_200() {
    let d = confirmed();
    let c = &d.core;
    assert_eq!(c.id.call_id, "dlg-1@pc.example");
    assert_eq!(c.id.local_tag, "as-tag");
    assert_eq!(c.id.remote_tag, "from-a");
    assert_eq!(c.remote_seq, Some(4711));
    assert_eq!(c.local_seq, None);
    assert_eq!(
        c.remote_target.to_string(),
        "sip:alice@192.0.2.10:5062;transport=udp"
    );
    assert_eq!(
        c.route_set,
        vec![
            "<sip:p2.example;lr>".to_owned(),
            "<sip:p1.example;lr>".to_owned()
        ]
    );
    assert_eq!(c.local_contact.as_deref(), Some("<sip:as@192.0.2.1:5060>"));
}

#[test]
fn uas_response_copies_record_route_and_adds_tag_and_contact() {
    let req = invite();
    let ok = ok_for(&req);
    assert_eq!(ok.to().unwrap().tag(), Some("as-tag"));
    assert_eq!(ok.headers.get_all(&HeaderName::RECORD_ROUTE).count(), 2);
    assert!(ok.contact().unwrap().is_some());
}

#[test]
fn early_dialog_from_180_then_confirmed() {
    let req = invite();
    let ringing = uas_response(
        &req,
        StatusCode(180),
        "Ringing",
        "as-tag",
        "<sip:as@192.0.2.1>",
    );
    let Dialog::Early(early) = Dialog::uas(&req, &ringing, false).unwrap() else {
        panic!("180 makes an early dialog")
    };
    let confirmed = early.confirm(None);
    assert_eq!(confirmed.core.id.local_tag, "as-tag");
    let trying = Response::for_request(&req, StatusCode(100), "Trying").with_to_tag("x");
    assert_eq!(
        Dialog::uas(&req, &trying, false),
        Err(DialogError::NotDialogCreating(100))
    );
    let no_tag = Response::for_request(&req, StatusCode(200), "OK");
    assert!(matches!(
        Dialog::uas(&req, &no_tag, false),
        Err(DialogError::Missing(_))
    ));
}

/// A request the peer (Alice) sends inside the dialog.
fn from_peer(d: &ConfirmedDialog, method: &str, seq: u32, contact: Option<&str>) -> Request {
    let contact = contact
        .map(|c| format!("Contact: {c}\r\n"))
        .unwrap_or_default();
    let raw = format!(
        "{method} sip:as@192.0.2.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP pc.example:5060;branch=z9hG4bK-d{seq}\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@example.com>;tag={}\r\n\
To: <sip:news@as.example>;tag={}\r\n\
Call-ID: {}\r\n\
CSeq: {seq} {method}\r\n{contact}\
Content-Length: 0\r\n\r\n",
        d.core.id.remote_tag, d.core.id.local_tag, d.core.id.call_id
    );
    match Message::parse(raw.as_bytes()).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => unreachable!(),
    }
}

#[test]
fn in_dialog_matching_by_call_id_and_tags() {
    let d = confirmed();
    let reinvite = from_peer(&d, "INVITE", 4712, None);
    assert_eq!(DialogId::of_incoming(&reinvite).as_ref(), Some(&d.core.id));
    assert!(d.core.matches(&reinvite));
    let mut other = d.clone();
    other.core.id.remote_tag = "someone-else".into();
    assert!(!other.core.matches(&reinvite));
    // Out of dialog (no To tag): no id.
    assert_eq!(DialogId::of_incoming(&invite()), None);
}

#[test]
fn reinvite_refreshes_target_and_cseq_order_is_enforced() {
    let mut d = confirmed();
    let reinvite = from_peer(&d, "INVITE", 4712, Some("<sip:alice@198.51.100.9:6000>"));
    d.core.on_request(&reinvite).unwrap();
    assert_eq!(d.core.remote_seq, Some(4712));
    assert_eq!(
        d.core.remote_target.to_string(),
        "sip:alice@198.51.100.9:6000"
    );
    // Same or lower CSeq: refused (12.2.2: 500).
    let old = from_peer(&d, "INFO", 4712, None);
    assert_eq!(
        d.core.on_request(&old),
        Err(DialogError::OutOfOrder {
            got: 4712,
            last: 4712
        })
    );
    // ACK carries the INVITE's CSeq and is fine.
    let ack = from_peer(&d, "ACK", 4712, None);
    d.core.on_request(&ack).unwrap();
    // A non-refresh request does not move the target.
    let info = from_peer(&d, "INFO", 4713, Some("<sip:elsewhere@203.0.113.1>"));
    d.core.on_request(&info).unwrap();
    assert_eq!(
        d.core.remote_target.to_string(),
        "sip:alice@198.51.100.9:6000"
    );
}

#[test]
fn bye_from_the_uas_side() {
    let d = confirmed();
    let (bye, ended) = d.bye();
    let bye = reparse(&bye);
    assert_eq!(bye.method, Method::BYE);
    // Loose routing: Request-URI is the remote target, Route is the route set in order.
    assert_eq!(
        bye.uri.to_string(),
        "sip:alice@192.0.2.10:5062;transport=udp"
    );
    let routes: Vec<&str> = bye.headers.get_all(&HeaderName::ROUTE).collect();
    assert_eq!(routes, vec!["<sip:p2.example;lr>", "<sip:p1.example;lr>"]);
    // From is us (with our tag), To is the peer (with its tag).
    assert_eq!(bye.from().unwrap().tag(), Some("as-tag"));
    assert_eq!(bye.to().unwrap().tag(), Some("from-a"));
    assert_eq!(bye.to().unwrap().display.as_deref(), Some("Alice"));
    assert_eq!(bye.call_id().unwrap(), "dlg-1@pc.example");
    assert_eq!(bye.cseq().unwrap().method, Method::BYE);
    assert!(bye.headers.get(&HeaderName::CONTACT).is_none());
    assert_eq!(ended.reason, TerminationReason::Bye);
}

#[test]
fn peer_bye_ends_the_dialog_and_a_stale_one_does_not() {
    let d = confirmed();
    let stale = from_peer(&d, "BYE", 1, None);
    let d = match d.on_bye(&stale) {
        Err(e) => {
            assert!(matches!(e.1, DialogError::OutOfOrder { .. }));
            e.0
        }
        Ok(_) => panic!("stale BYE accepted"),
    };
    let bye = from_peer(&d, "BYE", 4712, None);
    let ended = d.on_bye(&bye).unwrap();
    assert_eq!(ended.id.local_tag, "as-tag");
}

#[test]
fn notify_in_a_subscription_dialog_increments_cseq() {
    let raw = "SUBSCRIBE sip:channels@as.example SIP/2.0\r\n\
Via: SIP/2.0/TCP ue.example;branch=z9hG4bK-s1\r\n\
Max-Forwards: 70\r\n\
From: <sip:bob@example.com>;tag=b1\r\n\
To: <sip:channels@as.example>\r\n\
Call-ID: sub-1\r\n\
CSeq: 1 SUBSCRIBE\r\n\
Event: iptv-channels\r\n\
Expires: 3600\r\n\
Contact: <sip:bob@192.0.2.30:5070;transport=tcp>\r\n\
Content-Length: 0\r\n\r\n";
    let Message::Request(sub) = Message::parse(raw.as_bytes()).unwrap() else {
        unreachable!()
    };
    let ok = uas_response(
        &sub,
        StatusCode(200),
        "OK",
        "as-sub",
        "<sip:as@192.0.2.1;transport=tcp>",
    );
    let Dialog::Confirmed(mut d) = Dialog::uas(&sub, &ok, false).unwrap() else {
        panic!()
    };
    let n1 = reparse(&d.notify(
        "iptv-channels",
        "active;expires=3600",
        "application/json",
        &b"[]"[..],
    ));
    let n2 = reparse(&d.notify(
        "iptv-channels",
        "active;expires=3500",
        "application/json",
        &b"[1]"[..],
    ));
    assert_eq!(n1.method, Method::NOTIFY);
    assert_eq!(n1.uri.to_string(), "sip:bob@192.0.2.30:5070;transport=tcp");
    assert!(n1.headers.get(&HeaderName::ROUTE).is_none());
    assert_eq!(n1.headers.get(&HeaderName::EVENT), Some("iptv-channels"));
    assert_eq!(
        n1.headers.get(&HeaderName::SUBSCRIPTION_STATE),
        Some("active;expires=3600")
    );
    assert_eq!(
        n1.headers.get(&HeaderName::CONTENT_TYPE),
        Some("application/json")
    );
    assert_eq!(&n1.body[..], b"[]");
    assert_eq!(
        n1.headers.get(&HeaderName::CONTACT),
        Some("<sip:as@192.0.2.1;transport=tcp>")
    );
    assert_eq!(n2.cseq().unwrap().seq, n1.cseq().unwrap().seq + 1);
    assert_eq!(n1.to().unwrap().tag(), Some("b1"));
    assert_eq!(n1.from().unwrap().tag(), Some("as-sub"));
}

#[test]
fn strict_route_puts_first_route_in_request_uri() {
    let mut d = confirmed();
    d.core.route_set = vec!["<sip:strict.example>".into(), "<sip:p1.example;lr>".into()];
    let bye = reparse(&d.core.new_request(Method::BYE));
    assert_eq!(bye.uri.to_string(), "sip:strict.example");
    let routes: Vec<&str> = bye.headers.get_all(&HeaderName::ROUTE).collect();
    assert_eq!(
        routes,
        vec![
            "<sip:p1.example;lr>",
            "<sip:alice@192.0.2.10:5062;transport=udp>"
        ]
    );
}

#[test]
fn uac_dialog_reverses_record_route_and_acks_2xx() {
    let mut req = invite();
    req.headers
        .set(HeaderName::FROM, "<sip:as@as.example>;tag=uac-tag");
    let mut ok = Response::for_request(&req, StatusCode(200), "OK").with_to_tag("peer");
    ok.headers
        .push(HeaderName::RECORD_ROUTE, "<sip:p2.example;lr>");
    ok.headers
        .push(HeaderName::RECORD_ROUTE, "<sip:p1.example;lr>");
    ok.headers
        .push(HeaderName::CONTACT, "<sip:peer@203.0.113.4>");
    let Dialog::Confirmed(d) = Dialog::uac(&req, &ok, false).unwrap() else {
        panic!()
    };
    assert_eq!(d.core.route_set[0], "<sip:p1.example;lr>");
    assert_eq!(d.core.local_seq, Some(4711));
    let ack = reparse(&d.ack(4711));
    assert_eq!(ack.cseq().unwrap().seq, 4711);
    assert_eq!(ack.cseq().unwrap().method, Method::ACK);
    assert_eq!(ack.uri.to_string(), "sip:peer@203.0.113.4");
    assert_eq!(d.core.local_seq, Some(4711), "ACK does not consume a CSeq");
}

#[test]
fn next_hop_from_route_set_or_remote_target() {
    let mut d = confirmed();
    // First route is a host name: no resolution here.
    assert_eq!(d.core.next_hop(), None);
    d.core.route_set.clear();
    assert_eq!(
        d.core.next_hop(),
        Some(("192.0.2.10:5062".parse().unwrap(), Transport::Udp))
    );
    d.core.route_set = vec!["<sip:198.51.100.1:5070;lr;transport=tcp>".into()];
    assert_eq!(
        d.core.next_hop(),
        Some(("198.51.100.1:5070".parse().unwrap(), Transport::Tcp))
    );
    let sips = Uri::parse("sips:bob@[2001:db8::1]").unwrap();
    assert_eq!(
        uri_destination(&sips),
        Some(("[2001:db8::1]:5061".parse().unwrap(), Transport::Tls))
    );
}
