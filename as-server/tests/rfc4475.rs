//! RFC 4475 torture tests for the SIP codec.
//!
//! 1. `our_vectors_*`: the project's own messages in `tests/vectors/` (written for this
//!    project, exercising the same properties as RFC 4475; not copies of the RFC's). Each
//!    test checks the key fields the RFC says a parser must understand, or the specific error
//!    and the 400 that can be built.
//! 2. `reference_rfc4475_files`: runs the codec over the RFC's own messages in
//!    `../shared/testdata/rfc4475/*.dat` (outside the repo, never copied in) when that
//!    directory exists, and checks each file's verdict per RFC 4475. Skipped when absent.
//!
//! Layers (see `as_server::sip::validate`): grammar errors are refused by
//! `Message::parse`; semantic ones (416, 420, 415, 406, 483...) by `validate_request`.

use std::path::PathBuf;

use as_server::sip::{
    validate_request, ErrorKind, HeaderName, Host, Message, Method, Policy, Request, Scheme,
    StatusCode,
};

/// What RFC 4475 expects of a message.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    /// Parses and passes `validate_request` (or is a valid response).
    Valid,
    /// Parses but `validate_request` (default UAS policy) answers this status.
    Reject(u16),
    /// Parses; `validate_request` answers this status only when forwarding (proxy).
    RejectWhenForwarding(u16),
    /// The codec refuses it; a request gets this status (400/505) if it can be answered.
    Invalid(u16),
    /// A response the codec refuses (dropped, RFC 3261 section 18.1.2).
    InvalidResponse,
}
use Verdict::*;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn load(name: &str) -> Vec<u8> {
    let p = vectors_dir().join(name);
    let text = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    decode_vector(&text)
}

/// Vectors are stored as text with LF line ends, turned into CRLF here. `\xHH` writes the
/// octet HH (any other backslash is literal); a line ending in `<NOCRLF>` gets no line break.
/// Content-Length values in the files are the real body lengths.
fn decode_vector(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 64);
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    for (idx, line) in lines.iter().enumerate() {
        let (line, no_crlf) = match line.strip_suffix(b"<NOCRLF>") {
            Some(l) => (l, true),
            None => (*line, false),
        };
        let mut i = 0;
        while i < line.len() {
            if line[i] == b'\\' && line.get(i + 1) == Some(&b'x') && i + 3 < line.len() {
                let hex = std::str::from_utf8(&line[i + 2..i + 4]).unwrap();
                if let Ok(v) = u8::from_str_radix(hex, 16) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
            out.push(line[i]);
            i += 1;
        }
        if !no_crlf && idx + 1 < lines.len() {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

fn check_verdict(name: &str, data: &[u8], verdict: Verdict) {
    let parsed = Message::parse(data);
    match verdict {
        Valid | Reject(_) | RejectWhenForwarding(_) => {
            let m = parsed.unwrap_or_else(|e| panic!("{name}: must parse, got {e:?}"));
            // Round trip: the canonical encoding re-parses to an equal message.
            let again = Message::parse(&m.to_bytes())
                .unwrap_or_else(|e| panic!("{name}: re-parse of encoding failed: {e}"));
            assert_eq!(again, m, "{name}: round trip");
            let Message::Request(req) = &m else {
                assert_eq!(verdict, Valid, "{name}");
                return;
            };
            let uas = validate_request(req, &Policy::default());
            let proxy = validate_request(
                req,
                &Policy {
                    forwarding: true,
                    ..Policy::default()
                },
            );
            match verdict {
                Valid => assert_eq!(uas, Ok(()), "{name}"),
                Reject(code) => {
                    let r = uas.expect_err(name);
                    assert_eq!(r.status, StatusCode(code), "{name}");
                    let resp = r.response(req);
                    assert_eq!(resp.status.0, code);
                    assert_eq!(resp.call_id().unwrap(), req.call_id().unwrap());
                }
                RejectWhenForwarding(code) => {
                    assert_eq!(uas, Ok(()), "{name}: UAS answers it");
                    assert_eq!(proxy.expect_err(name).status, StatusCode(code), "{name}");
                }
                _ => unreachable!(),
            }
        }
        Invalid(code) => {
            let e = match parsed {
                Ok(m) => panic!("{name}: must be refused, parsed as {m:?}"),
                Err(e) => e,
            };
            assert_eq!(e.status(), StatusCode(code), "{name}: {e}");
            assert!(e.reason_phrase().len() > 12, "{name}");
            if let Some(resp) = e.error_response() {
                assert_eq!(resp.status.0, code);
                assert!(resp.top_via().is_ok());
                let bytes = resp.to_bytes();
                assert!(bytes.starts_with(format!("SIP/2.0 {code} ").as_bytes()));
            }
        }
        InvalidResponse => {
            let e = parsed.expect_err(name);
            assert!(e.partial_request().is_none(), "{name}");
            assert!(e.error_response().is_none(), "{name}");
        }
    }
}

/// The verdict RFC 4475 gives each of its messages (file names as in the RFC's archive).
const RFC4475_FILES: &[(&str, Verdict)] = &[
    // 3.1.1 valid messages
    ("wsinv.dat", Valid),
    ("intmeth.dat", Valid),
    ("esc01.dat", Valid),
    ("escnull.dat", Valid),
    ("esc02.dat", Valid),
    ("lwsdisp.dat", Valid),
    ("longreq.dat", Valid),
    ("dblreq.dat", Valid),
    ("semiuri.dat", Valid),
    ("transports.dat", Valid),
    ("mpart01.dat", Valid),
    ("unreason.dat", Valid),
    ("noreason.dat", Valid),
    // 3.1.2 invalid messages
    ("badinv01.dat", Invalid(400)),
    ("clerr.dat", Invalid(400)),
    ("ncl.dat", Invalid(400)),
    ("scalar02.dat", Invalid(400)),
    ("scalarlg.dat", InvalidResponse),
    ("quotbal.dat", Invalid(400)),
    ("ltgtruri.dat", Invalid(400)),
    ("lwsruri.dat", Invalid(400)),
    ("lwsstart.dat", Invalid(400)),
    ("trws.dat", Invalid(400)),
    ("escruri.dat", Invalid(400)),
    ("baddate.dat", Invalid(400)),
    ("regbadct.dat", Invalid(400)),
    ("badaspec.dat", Invalid(400)),
    ("baddn.dat", Invalid(400)),
    ("badvers.dat", Invalid(505)),
    ("mismatch01.dat", Invalid(400)),
    ("mismatch02.dat", Invalid(400)),
    ("bigcode.dat", InvalidResponse),
    // 3.2 transaction layer semantics
    ("badbranch.dat", Reject(400)),
    // 3.3 application layer semantics
    ("insuf.dat", Invalid(400)),
    ("unkscm.dat", Reject(416)),
    ("novelsc.dat", Reject(416)),
    ("unksm2.dat", Reject(400)),
    ("bext01.dat", Reject(420)),
    ("invut.dat", Reject(415)),
    ("regaut01.dat", Valid),
    ("multi01.dat", Invalid(400)),
    ("mcl01.dat", Invalid(400)),
    ("bcast.dat", Valid),
    ("zeromf.dat", RejectWhenForwarding(483)),
    ("cparam01.dat", Valid),
    ("cparam02.dat", Valid),
    ("regescrt.dat", Valid),
    ("sdp01.dat", Reject(406)),
    // 3.4 backward compatibility
    ("inv2543.dat", Valid),
    // not an RFC 4475 message: a request line without SIP-Version and a line without colon
    ("test.dat", Invalid(400)),
];

/// The specific error the codec gives each refused RFC 4475 message.
fn reference_error(name: &str) -> Option<ErrorKind> {
    use ErrorKind as K;
    Some(match name {
        "badaspec.dat" | "quotbal.dat" => K::BadHeader(HeaderName::TO),
        "baddate.dat" => K::BadHeader(HeaderName::DATE),
        "baddn.dat" => K::BadHeader(HeaderName::FROM),
        "badinv01.dat" => K::BadHeader(HeaderName::VIA),
        "badvers.dat" => K::VersionNotSupported,
        "bigcode.dat" => K::BadStatusCode,
        "clerr.dat" => K::BodyTooShort,
        "escruri.dat" => K::RequestUriHeaders,
        "insuf.dat" => K::MissingHeader(HeaderName::FROM),
        "ltgtruri.dat" | "lwsruri.dat" | "lwsstart.dat" => K::BadRequestUri,
        "mcl01.dat" => K::DuplicateHeader(HeaderName::CONTENT_LENGTH),
        "mismatch01.dat" | "mismatch02.dat" => K::CSeqMethodMismatch,
        "multi01.dat" => K::DuplicateHeader(HeaderName::CSEQ),
        "ncl.dat" => K::BadHeader(HeaderName::CONTENT_LENGTH),
        "regbadct.dat" => K::BadHeader(HeaderName::CONTACT),
        "scalar02.dat" | "scalarlg.dat" => K::BadHeader(HeaderName::CSEQ),
        "test.dat" | "trws.dat" => K::BadRequestLine,
        _ => return None,
    })
}

#[test]
fn reference_rfc4475_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/rfc4475");
    let dir = if dir.is_dir() {
        dir
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/rfc4475")
    };
    if !dir.is_dir() {
        eprintln!("skipping: {} not present", dir.display());
        return;
    }
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("dat") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let verdict = RFC4475_FILES
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no verdict listed for {name}"))
            .1;
        let data = std::fs::read(&path).unwrap();
        check_verdict(&name, &data, verdict);
        if let Some(kind) = reference_error(&name) {
            assert_eq!(Message::parse(&data).unwrap_err().kind(), &kind, "{name}");
        }
        seen += 1;
    }
    assert_eq!(seen, RFC4475_FILES.len(), "every listed file was found");
}

// ---------------------------------------------------------------------------------------
// Our own vectors.
// ---------------------------------------------------------------------------------------

/// Every vector file has a verdict here, and every listed file exists.
const OUR_VECTORS: &[(&str, Verdict)] = &[
    ("v01_tortuous_ws.sip", Valid),
    ("v02_extension_method.sip", Valid),
    ("v03_escapes.sip", Valid),
    ("v04_escaped_nul.sip", Valid),
    ("v05_percent_not_escape.sip", Valid),
    ("v06_no_lws_display.sip", Valid),
    ("v07_long_values.sip", Valid),
    ("v08_trailing_datagram.sip", Valid),
    ("v09_semicolon_user.sip", Valid),
    ("v10_transports_ipv6.sip", Valid),
    ("v11_multipart_binary.sip", Valid),
    ("v12_utf8_reason.sip", Valid),
    ("v13_empty_reason.sip", Valid),
    ("v14_ipv6_everywhere.sip", Valid),
    ("v15_rfc2543_style.sip", Valid),
    ("v16_contact_params.sip", Valid),
    ("v17_register_escaped_route.sip", Valid),
    ("s01_unknown_scheme.sip", Reject(416)),
    ("s02_require_unknown.sip", Reject(420)),
    ("s03_unknown_content_type.sip", Reject(415)),
    ("s04_accept_no_sdp.sip", Reject(406)),
    ("s05_zero_max_forwards.sip", RejectWhenForwarding(483)),
    ("s06_bare_cookie_branch.sip", Reject(400)),
    ("s07_register_to_not_sip.sip", Reject(400)),
    ("x01_empty_params.sip", Invalid(400)),
    ("x02_cl_too_big.sip", Invalid(400)),
    ("x03_negative_cl.sip", Invalid(400)),
    ("x04_overlarge_cseq.sip", Invalid(400)),
    ("x05_overlarge_response.sip", InvalidResponse),
    ("x06_unterminated_quote.sip", Invalid(400)),
    ("x07_angle_ruri.sip", Invalid(400)),
    ("x08_space_in_ruri.sip", Invalid(400)),
    ("x09_double_sp.sip", Invalid(400)),
    ("x10_trailing_sp.sip", Invalid(400)),
    ("x11_ruri_headers.sip", Invalid(400)),
    ("x12_bad_date.sip", Invalid(400)),
    ("x13_addrspec_with_query.sip", Invalid(400)),
    ("x14_space_in_brackets.sip", Invalid(400)),
    ("x15_comma_display.sip", Invalid(400)),
    ("x16_version_3.sip", Invalid(505)),
    ("x17_cseq_mismatch.sip", Invalid(400)),
    ("x18_big_status.sip", InvalidResponse),
    ("x19_missing_headers.sip", Invalid(400)),
    ("x20_dup_call_id.sip", Invalid(400)),
    ("x21_dup_content_length.sip", Invalid(400)),
    ("x22_bare_lf.sip", Invalid(400)),
];

/// The specific error each invalid vector must give.
fn expected_error(name: &str) -> ErrorKind {
    use ErrorKind as K;
    match name {
        "x01_empty_params.sip" => K::BadHeader(HeaderName::VIA),
        "x02_cl_too_big.sip" => K::BodyTooShort,
        "x03_negative_cl.sip" => K::BadHeader(HeaderName::CONTENT_LENGTH),
        "x04_overlarge_cseq.sip" => K::BadHeader(HeaderName::MAX_FORWARDS),
        "x05_overlarge_response.sip" => K::BadHeader(HeaderName::CSEQ),
        "x06_unterminated_quote.sip" => K::BadHeader(HeaderName::TO),
        "x07_angle_ruri.sip" | "x08_space_in_ruri.sip" | "x09_double_sp.sip" => K::BadRequestUri,
        "x10_trailing_sp.sip" => K::BadRequestLine,
        "x11_ruri_headers.sip" => K::RequestUriHeaders,
        "x12_bad_date.sip" => K::BadHeader(HeaderName::DATE),
        "x13_addrspec_with_query.sip" => K::BadHeader(HeaderName::CONTACT),
        "x14_space_in_brackets.sip" => K::BadHeader(HeaderName::FROM),
        "x15_comma_display.sip" => K::BadHeader(HeaderName::TO),
        "x16_version_3.sip" => K::VersionNotSupported,
        "x17_cseq_mismatch.sip" => K::CSeqMethodMismatch,
        "x18_big_status.sip" => K::BadStatusCode,
        "x19_missing_headers.sip" => K::MissingHeader(HeaderName::FROM),
        "x20_dup_call_id.sip" => K::DuplicateHeader(HeaderName::CALL_ID),
        "x21_dup_content_length.sip" => K::DuplicateHeader(HeaderName::CONTENT_LENGTH),
        "x22_bare_lf.sip" => K::BadHeaderLine,
        other => panic!("no expected error for {other}"),
    }
}

#[test]
fn our_vectors_verdicts() {
    let mut files: Vec<String> = std::fs::read_dir(vectors_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sip"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        OUR_VECTORS.len(),
        "one verdict per vector file"
    );
    for f in &files {
        assert!(
            OUR_VECTORS.iter().any(|(n, _)| n == f),
            "vector {f} has no verdict"
        );
    }
    for (name, verdict) in OUR_VECTORS {
        let data = load(name);
        check_verdict(name, &data, *verdict);
        if matches!(verdict, Invalid(_) | InvalidResponse) {
            let e = Message::parse(&data).unwrap_err();
            assert_eq!(e.kind(), &expected_error(name), "{name}");
        }
    }
}

/// Requests whose errors allow an answer get a 400 that copies Via, From, To, Call-ID, CSeq
/// (RFC 3261 8.2.6.2) and names the cause in the reason phrase.
#[test]
fn our_vectors_bad_request_answers() {
    let e = Message::parse(&load("x17_cseq_mismatch.sip")).unwrap_err();
    let resp = e.error_response().expect("answerable");
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert!(resp.reason.contains("CSeq"), "{}", resp.reason);
    assert_eq!(resp.call_id().unwrap(), "x17_cseq_mismatch@198.51.100.7");
    assert_eq!(resp.top_via().unwrap().branch(), Some("z9hG4bKx"));
    assert_eq!(resp.from().unwrap().tag(), Some("x1"));
    // the answer re-parses as a valid response
    let back = Message::parse(&resp.to_bytes()).unwrap();
    assert_eq!(back.as_response().unwrap().status, StatusCode::BAD_REQUEST);

    let e = Message::parse(&load("x16_version_3.sip")).unwrap_err();
    assert_eq!(e.status(), StatusCode::VERSION_NOT_SUPPORTED);
    // the Via says SIP/3.0: still a well-formed via-parm, so a 505 can be sent
    assert_eq!(e.error_response().unwrap().status.0, 505);

    // broken Via: no way to route an answer
    let e = Message::parse(&load("x01_empty_params.sip")).unwrap_err();
    assert!(e.partial_request().is_some());
    assert!(e.error_response().is_none());

    // broken request line: still answerable (RFC 4475 3.1.2.7-3.1.2.10 expect a 400)
    for f in [
        "x07_angle_ruri.sip",
        "x09_double_sp.sip",
        "x10_trailing_sp.sip",
    ] {
        let e = Message::parse(&load(f)).unwrap_err();
        let r = e.error_response().unwrap_or_else(|| panic!("{f}"));
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{f}");
    }

    // missing From/To/Call-ID: RFC 4475 3.3.1 wants a 400 if at all possible
    let e = Message::parse(&load("x19_missing_headers.sip")).unwrap_err();
    let r = e.error_response().unwrap();
    assert!(r.headers.get(&HeaderName::CSEQ).is_some());
}

fn parse_req(name: &str) -> Request {
    match Message::parse(&load(name)).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => panic!("{name} is a response"),
    }
}

#[test]
fn our_vectors_tortuous_whitespace_is_understood() {
    let r = parse_req("v01_tortuous_ws.sip");
    assert_eq!(r.method, Method::INVITE);
    assert!(r.uri.has_param("unknownparam"));
    assert_eq!(r.to().unwrap().tag(), Some("55aa77"));
    let from = r.from().unwrap();
    assert_eq!(from.tag(), Some("9zz8"));
    assert_eq!(from.display.as_deref(), Some(r#"Zapper \"Pro\"#));
    assert_eq!(r.max_forwards().unwrap(), Some(42));
    let cseq = r.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (12, Method::INVITE));
    let vias = r.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].branch(), Some("z9hG4bKws1"));
    assert_eq!(vias[0].transport, "UDP");
    assert_eq!(vias[1].branch(), Some("z9hG4bKws2"));
    assert_eq!(vias[1].host, Host::Domain("relay1.tv.example.org".into()));
    assert_eq!(vias[2].branch(), Some("z9hG4bKws3"));
    assert_eq!(r.headers.get(&HeaderName::SUBJECT), Some(""));
    assert_eq!(
        r.headers.get(&HeaderName::new("x-long-thing")),
        Some("first part second part")
    );
    assert_eq!(r.headers.get(&HeaderName::new("X-Odd")), Some(";;,,;;,;"));
    let route = r.name_addrs(&HeaderName::ROUTE).unwrap();
    assert!(route[0].uri.has_param("lr") && route[0].uri.has_param("flag"));
    let c = r.contact().unwrap().unwrap();
    assert_eq!(c.display.as_deref(), Some(r#"Set "Top" Box"#));
    assert_eq!(c.params.get("p1"), Some(Some("v1")));
    assert!(c.params.contains("flag2"));
    assert_eq!(c.q(), Some("0.5"));
    assert_eq!(r.body.len(), 150);
    assert!(r.content_type_is("application/sdp"));
}

#[test]
fn our_vectors_unusual_characters_are_understood() {
    let r = parse_req("v02_extension_method.sip");
    assert_eq!(r.method.as_str(), "~Chan.Zap-Method_0123456789*+`%!'~");
    assert_eq!(r.cseq().unwrap().method, r.method);
    assert_eq!(
        r.uri.user.as_deref(),
        Some("chan_42~(now!)&really+ok$/x?,/;;*")
    );
    assert_eq!(r.uri.password.as_deref(), Some("&pw+is=1,odd!*pa$s~(yes)"));
    assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK-._!%42*+`'~"));
    let to = r.to().unwrap();
    assert_eq!(
        to.display.as_deref(),
        Some("CTL:\u{1} NUL:\u{0} DEL:\u{7f}")
    );
    let from = r.from().unwrap();
    assert_eq!(from.display.as_deref(), Some("tok1~` tok2'+_ tok3*%!.-"));
    assert_eq!(from.tag(), Some("_tk"));
    assert_eq!(
        r.call_id().unwrap(),
        r#"ext.vec02%ZZ-!.*_+'@odd`~)(><:\\/"][?}{"#
    );
    assert_eq!(r.max_forwards().unwrap(), Some(255));
    assert!(r
        .headers
        .get(&HeaderName::new("x-ext-!.%*+_`'~"))
        .unwrap()
        .ends_with("guide"));
}

#[test]
fn our_vectors_escapes_are_understood() {
    let r = parse_req("v03_escapes.sip");
    assert_eq!(
        r.uri.user_unescaped().unwrap().as_ref(),
        b"sips:viewer@home.example.com"
    );
    assert_eq!(r.uri.host, Host::Domain("tv.example.org".into()));
    let to = r.to().unwrap();
    assert!(to
        .uri
        .equivalent(&"sip:news@tv.example.org".parse().unwrap()));
    assert_eq!(
        r.from().unwrap().uri.user_unescaped().unwrap().as_ref(),
        b"My Set Top"
    );
    let c = r.contact().unwrap().unwrap();
    assert_eq!(c.uri.user_unescaped().unwrap().as_ref(), b"stb");
    assert_eq!(c.uri.params[0], ("%6C%72".to_owned(), None));
    assert!(c
        .uri
        .equivalent(&"sip:stb@198.51.100.7;lr;chan=news%41".parse().unwrap()));

    let r = parse_req("v04_escaped_nul.sip");
    assert_eq!(
        r.to().unwrap().uri.user_unescaped().unwrap().as_ref(),
        b"box-\0-one"
    );
    let contacts = r.contacts().unwrap();
    assert_eq!(contacts.len(), 2);
    assert_eq!(
        contacts[1].uri.user_unescaped().unwrap().as_ref(),
        b"\0\0\0"
    );

    let r = parse_req("v05_percent_not_escape.sip");
    assert_eq!(r.method.as_str(), "ZA%50");
    assert_eq!(r.contacts().unwrap().len(), 2, "C%6Fntact is not Contact");
    assert!(r.headers.get(&HeaderName::new("C%6Fntact")).is_some());
    assert_eq!(r.to().unwrap().display.as_deref(), Some("%Q%51"));
    assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK5%qq5"));
}

#[test]
fn our_vectors_addresses_and_lists_are_understood() {
    let r = parse_req("v06_no_lws_display.sip");
    assert_eq!(r.from().unwrap().display.as_deref(), Some("settop"));

    let r = parse_req("v07_long_values.sip");
    assert_eq!(r.vias().unwrap().len(), 41);
    assert!(r.top_via().unwrap().branch().unwrap().len() > 200);
    assert_eq!(r.to().unwrap().tag().unwrap().len(), 120);
    assert_eq!(r.to().unwrap().uri.port, Some(6000));

    let r = parse_req("v08_trailing_datagram.sip");
    assert!(
        r.body.is_empty(),
        "bytes after Content-Length are not the body"
    );
    assert_eq!(r.method, Method::OPTIONS);

    let r = parse_req("v09_semicolon_user.sip");
    assert_eq!(r.uri.user.as_deref(), Some("chan;kind=live%40now"));
    assert!(r.uri.params.is_empty());
    let accept: Vec<&str> = r.headers.get_all(&HeaderName::ACCEPT).collect();
    assert_eq!(
        accept,
        [
            "application/sdp",
            "application/json",
            "multipart/mixed",
            "message/sipfrag"
        ]
    );

    let r = parse_req("v10_transports_ipv6.sip");
    let vias = r.vias().unwrap();
    let transports: Vec<&str> = vias.iter().map(|v| v.transport.as_str()).collect();
    assert_eq!(transports, ["UDP", "SCTP", "TLS", "WS", "NEWTHING"]);
    assert_eq!(vias[0].host, Host::Ipv6("2001:db8::10".parse().unwrap()));
    assert_eq!(vias[0].port, Some(5070));
    assert_eq!(vias[0].received(), Some("2001:db8::99".parse().unwrap()));
    assert_eq!(vias[0].rport(), Some(Some(5071)));
    assert_eq!(vias[2].host, Host::Ipv6("2001:db8::20".parse().unwrap()));
    assert_eq!(vias[4].maddr(), Some("239.1.2.3"));

    let r = parse_req("v14_ipv6_everywhere.sip");
    assert_eq!(r.uri.host, Host::Ipv6("2001:db8::1".parse().unwrap()));
    assert_eq!(r.uri.port, Some(5070));
    assert_eq!(r.uri.param("transport"), Some(Some("tcp")));
    assert_eq!(
        r.to_bytes()
            .windows(24)
            .filter(|w| w == b"sip:news@[2001:db8::1]:5")
            .count(),
        1
    );
    let route = r.name_addrs(&HeaderName::ROUTE).unwrap();
    assert_eq!(
        route[0].uri.host,
        Host::Ipv6("2001:db8::2".parse().unwrap())
    );

    let r = parse_req("v16_contact_params.sip");
    let c = r.contacts().unwrap();
    assert!(c[0].uri.params.is_empty() && c[0].params.contains("oddparam"));
    assert!(c[1].uri.has_param("oddparam") && !c[1].params.contains("oddparam"));
    assert_eq!(
        c[1].expires(),
        Some(u32::MAX),
        "overlarge expires saturates"
    );
    assert_eq!(r.expires(), Some(u32::MAX));

    let r = parse_req("v17_register_escaped_route.sip");
    let c = r.contact().unwrap().unwrap();
    assert_eq!(
        c.uri.headers,
        [(
            "Route".to_owned(),
            "%3Csip:edge.tv.example.org%3E".to_owned()
        )]
    );
}

#[test]
fn our_vectors_bodies_and_responses_are_kept_exact() {
    let raw = load("v11_multipart_binary.sip");
    let r = parse_req("v11_multipart_binary.sip");
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&r.body[..], &raw[at..], "body byte-exact");
    assert!(r.body.contains(&0) && r.body.contains(&0xff));
    assert_eq!(r.top_via().unwrap().rport(), Some(None));
    // the encoding carries the body unchanged
    let enc = r.to_bytes();
    assert!(enc.ends_with(&r.body));

    let m = Message::parse(&load("v12_utf8_reason.sip")).unwrap();
    let resp = m.as_response().unwrap();
    assert_eq!(resp.status, StatusCode::OK);
    assert!(resp.reason.starts_with("Да = 2**3"));
    let m = Message::parse(&load("v13_empty_reason.sip")).unwrap();
    let resp = m.as_response().unwrap();
    assert_eq!((resp.status.0, resp.reason.as_str()), (180, ""));

    let r = parse_req("v15_rfc2543_style.sip");
    assert_eq!(r.top_via().unwrap().branch(), None);
    assert_eq!(r.max_forwards().unwrap(), None);
    assert_eq!(r.from().unwrap().tag(), None);
    assert!(
        r.body.ends_with(b"RTP/AVP 33\r\n"),
        "no Content-Length: rest of datagram"
    );
    assert_eq!(r.headers.get(&HeaderName::CONTENT_LENGTH), Some("97"));
}

#[test]
fn our_vectors_semantic_checks_name_the_answer() {
    let r = parse_req("s01_unknown_scheme.sip");
    assert_eq!(r.uri.scheme, Scheme::Other("nobodyKnowsThis".into()));
    let r = parse_req("s02_require_unknown.sip");
    let rej = validate_request(&r, &Policy::default()).unwrap_err();
    let resp = rej.response(&r);
    let unsupported: Vec<&str> = resp.headers.get_all(&HeaderName::UNSUPPORTED).collect();
    assert_eq!(unsupported, ["channel-zapping-v9", "notreal"]);
    let ok = validate_request(
        &r,
        &Policy {
            supported: &["channel-zapping-v9", "notreal"],
            ..Policy::default()
        },
    );
    assert!(ok.is_ok());
    let r = parse_req("s03_unknown_content_type.sip");
    let rej = validate_request(&r, &Policy::default()).unwrap_err();
    assert!(rej.response(&r).headers.get(&HeaderName::ACCEPT).is_some());
}
