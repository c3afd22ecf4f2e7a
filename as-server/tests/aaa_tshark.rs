//! Wireshark decodes every message the embedded AAA emits cleanly (UDA with the profile,
//! UDA 5001 experimental, the 5005 / 3001 / 3007 error answers, ACA, PNR), each next to the
//! request it answers. Exported-PDU pcap (link type 252, dissector "diameter") and
//! `tshark -z expert`: no error, no warning, nothing malformed. Skipped with a message when
//! tshark is missing, unless `CI` is set.

use std::path::Path;
use std::process::Command;

use as_server::aaa::handler::{self, Action, LocalIdentity};
use as_server::diameter::rf::{Acr, ImsInformation, RecordType};
use as_server::diameter::sh::{experimental, Udr};
use as_server::diameter::{dict, ApplicationId, Avp, CommandCode, Message, ResultCode, Time};
use as_server::store::Profile;

fn local() -> LocalIdentity {
    LocalIdentity {
        origin_host: "aaa.iptv.example".into(),
        origin_realm: "iptv.example".into(),
    }
}

/// Requests and the AAA's answers (plus one PNR), identifiers set as on the wire.
fn messages() -> Vec<Message> {
    let l = local();
    let mut out = Vec::new();
    let mut id = 0x100;
    let mut req = |mut m: Message| {
        id += 1;
        m.hop_by_hop = id;
        m.end_to_end = 0x4000_0000 + id;
        m
    };
    let profile = Profile {
        identity: "sip:alice@iptv.example".into(),
        packages: vec!["basic".into(), "sports".into()],
        max_streams: 2,
        parental_level: 12,
        version: 4,
        updated_ms: 0,
    };
    // UDR -> UDA with the profile.
    let udr = req(Udr::iptv_profile(
        "as1.iptv.example;1;1",
        "as1.iptv.example",
        "iptv.example",
        "iptv.example",
        "sip:alice@iptv.example",
    )
    .to_message());
    let Action::Udr(u) = handler::classify(&l, &udr) else {
        panic!("UDR")
    };
    out.push(udr.clone());
    out.push(handler::uda_profile(&l, &u, &udr, &profile));
    // Unknown user -> 5001 experimental.
    out.push(udr.clone());
    out.push(handler::uda_outcome(
        &l,
        &u,
        &udr,
        handler::experimental_outcome(experimental::DIAMETER_ERROR_USER_UNKNOWN),
    ));
    // UDR without User-Identity -> 5005 with Failed-AVP.
    let mut bad = udr.clone();
    bad.avps.retain(|a| a.code != dict::USER_IDENTITY.code);
    let bad = req(bad);
    let Action::Answer(a) = handler::classify(&l, &bad) else {
        panic!("5005")
    };
    out.push(bad);
    out.push(a);
    // SNR -> 3001; a Credit-Control request -> 3007.
    for (code, app) in [
        (CommandCode::SUBSCRIBE_NOTIFICATIONS, ApplicationId::TGPP_SH),
        (CommandCode(272), ApplicationId::CREDIT_CONTROL),
    ] {
        let mut m = Message::request(code, app, true);
        m.avps
            .push(Avp::utf8(&dict::SESSION_ID, "as1.iptv.example;1;9"));
        m.avps
            .push(Avp::identity(&dict::ORIGIN_HOST, "as1.iptv.example"));
        m.avps
            .push(Avp::identity(&dict::ORIGIN_REALM, "iptv.example"));
        m.avps
            .push(Avp::identity(&dict::DESTINATION_REALM, "iptv.example"));
        let m = req(m);
        let Action::Answer(a) = handler::classify(&l, &m) else {
            panic!("3xxx")
        };
        out.push(m);
        out.push(a);
    }
    // ACR STOP -> ACA.
    let mut acr = Acr::new(
        "as1.iptv.example;1;7",
        "as1.iptv.example",
        "iptv.example",
        "iptv.example",
        RecordType::STOP,
        1,
    );
    acr.event_timestamp = Some(Time::from_unix(1_790_000_000));
    let mut ims = ImsInformation {
        calling_party_addresses: vec!["sip:alice@iptv.example".into()],
        ..ImsInformation::default()
    };
    ims.set_channel("news");
    ims.set_duration_secs(120);
    acr.ims = Some(ims);
    let acr_m = req(acr.to_message());
    out.push(acr_m.clone());
    out.push(handler::aca(&l, &acr, &acr_m, ResultCode::DIAMETER_SUCCESS));
    out.push(handler::aca(
        &l,
        &acr,
        &acr_m,
        ResultCode::DIAMETER_OUT_OF_SPACE,
    ));
    // PNR with the profile.
    out.push(req(handler::pnr(
        &l,
        "aaa.iptv.example;1;1".into(),
        "as1.iptv.example",
        "iptv.example",
        &profile,
    )));
    out
}

fn write_pcap(path: &Path, msgs: &[Message]) {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    for v in [0u32, 0, 262_144, 252] {
        f.extend_from_slice(&v.to_le_bytes());
    }
    for (i, m) in msgs.iter().enumerate() {
        let mut pdu = Vec::new();
        // EXP_PDU_TAG_PROTO_NAME "diameter" (NUL-padded), then END_OF_OPT.
        pdu.extend_from_slice(&12u16.to_be_bytes());
        pdu.extend_from_slice(&12u16.to_be_bytes());
        pdu.extend_from_slice(b"diameter\0\0\0\0");
        pdu.extend_from_slice(&[0, 0, 0, 0]);
        m.encode(&mut pdu).unwrap();
        for v in [1_790_000_000u32 + i as u32, 0] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.extend_from_slice(&(pdu.len() as u32).to_le_bytes());
        f.extend_from_slice(&(pdu.len() as u32).to_le_bytes());
        f.extend_from_slice(&pdu);
    }
    std::fs::write(path, f).unwrap();
}

#[test]
fn tshark_decodes_the_aaa_messages() {
    let present = Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "tshark is required in CI (install wireshark's tshark)"
        );
        eprintln!("SKIP: tshark not installed");
        return;
    }
    let msgs = messages();
    let path = std::env::temp_dir().join(format!("aaa-tshark-{}.pcap", std::process::id()));
    write_pcap(&path, &msgs);
    let expert = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-q", "-z", "expert"])
        .output()
        .unwrap();
    let verbose = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .arg("-V")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(expert.status.success() && verbose.status.success());
    let text = String::from_utf8_lossy(&expert.stdout).into_owned()
        + &String::from_utf8_lossy(&expert.stderr);
    let v = String::from_utf8_lossy(&verbose.stdout).into_owned();
    for bad in ["Errors (", "Malformed"] {
        assert!(
            !text.contains(bad) && !v.contains(bad),
            "tshark reports {bad:?}:\n{text}"
        );
    }
    // One warning is expected, and only that one: the Failed-AVP of the 5005 answer names
    // the missing User-Identity with an empty payload, as RFC 6733 section 7.5 asks ("a
    // zero-filled payload of the minimum required length"; 0 for a Grouped AVP), and
    // Wireshark marks an empty AVP "Data is empty" (Warning/Undecoded).
    if let Some((_, warns)) = text.split_once("Warns (") {
        let n: usize = warns
            .split(')')
            .next()
            .and_then(|x| x.trim().parse().ok())
            .unwrap_or(usize::MAX);
        assert_eq!(n, 1, "only the empty Failed-AVP placeholder warns:\n{text}");
        assert!(warns.contains("Data is empty"), "{text}");
    }
    for frame in v.split("\nFrame ").filter(|f| f.contains("Data is empty")) {
        assert!(
            frame.contains("DIAMETER_MISSING_AVP") && frame.contains("Failed-AVP"),
            "an empty AVP outside the 5005 Failed-AVP:\n{frame}"
        );
    }
    assert_eq!(
        v.matches("\nDiameter Protocol\n").count(),
        msgs.len(),
        "every frame decoded as Diameter"
    );
    let lower = v.to_ascii_lowercase();
    for name in [
        "Experimental-Result-Code: DIAMETER_ERROR_USER_UNKNOWN",
        "Result-Code: DIAMETER_MISSING_AVP",
        "Result-Code: DIAMETER_COMMAND_UNSUPPORTED",
        "Result-Code: DIAMETER_APPLICATION_UNSUPPORTED",
        "Result-Code: DIAMETER_OUT_OF_SPACE",
        "Accounting-Record-Type: Stop Record (4)",
        "Failed-AVP",
        "User-Data",
    ] {
        assert!(
            lower.contains(&name.to_ascii_lowercase()),
            "tshark shows {name:?}"
        );
    }
}
