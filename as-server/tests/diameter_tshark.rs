//! Wireshark decodes every Diameter message this crate builds cleanly: each typed message
//! (base, Sh, Rf, error answers; see `diameter_common`) goes into a pcap as an exported PDU
//! (link type 252, dissector "diameter"), and `tshark -z expert` must report no error or
//! warning and no malformed packet. Skipped with a message when tshark is missing, unless
//! `CI` is set.

use std::path::{Path, PathBuf};
use std::process::Command;

use as_server::diameter::Message;

mod diameter_common;
use diameter_common::messages;

/// A pcap of exported PDUs (link type 252, `WIRESHARK_UPPER_PDU`), one per message, handed
/// to the "diameter" dissector.
fn write_pcap(path: &Path, msgs: &[Message]) {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&0i32.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&262_144u32.to_le_bytes());
    f.extend_from_slice(&252u32.to_le_bytes());
    for (i, m) in msgs.iter().enumerate() {
        let mut pdu = Vec::new();
        // EXP_PDU_TAG_PROTO_NAME (12): the dissector name, NUL-padded to 4 bytes.
        let mut name = b"diameter".to_vec();
        name.resize((name.len() + 4) & !3, 0);
        pdu.extend_from_slice(&12u16.to_be_bytes());
        pdu.extend_from_slice(&(name.len() as u16).to_be_bytes());
        pdu.extend_from_slice(&name);
        // EXP_PDU_TAG_END_OF_OPT.
        pdu.extend_from_slice(&[0, 0, 0, 0]);
        m.encode(&mut pdu).unwrap();
        f.extend_from_slice(&(1_790_000_000u32 + i as u32).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&(pdu.len() as u32).to_le_bytes());
        f.extend_from_slice(&(pdu.len() as u32).to_le_bytes());
        f.extend_from_slice(&pdu);
    }
    std::fs::write(path, f).unwrap();
}

fn tshark_present() -> bool {
    Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("diameter-tshark-{}-{name}", std::process::id()))
}

#[test]
fn tshark_decodes_every_message_cleanly() {
    if !tshark_present() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tshark is required in CI (install wireshark's tshark)"
        );
        eprintln!("SKIP: tshark not installed");
        return;
    }
    let msgs = messages();
    let path = tmp("all.pcap");
    write_pcap(&path, &msgs);
    // DIAMETER_PCAP=file keeps a copy to look at with `tshark -V -r file` or Wireshark.
    if let Some(keep) = std::env::var_os("DIAMETER_PCAP") {
        write_pcap(Path::new(&keep), &msgs);
    }

    let expert = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-q", "-z", "expert"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&expert.stdout).into_owned()
        + &String::from_utf8_lossy(&expert.stderr);
    assert!(expert.status.success(), "tshark failed: {text}");
    let verbose = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .arg("-V")
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&verbose.stdout).into_owned();
    let _ = std::fs::remove_file(&path);
    for bad in ["Errors (", "Warns (", "Malformed"] {
        assert!(
            !text.contains(bad) && !v.contains(bad),
            "tshark reports {bad:?}:\n{text}\n{}",
            v.lines()
                .filter(|l| l.contains("Expert")
                    || l.contains("Malformed")
                    || l.contains("Unknown"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // Every frame is Diameter, and tshark knows every AVP we send (no "Unknown" AVP names
    // except the deliberately unknown one in the 5001 test).
    let frames = v.matches("\nDiameter Protocol\n").count();
    assert_eq!(frames, msgs.len(), "every frame decoded as Diameter");
    for name in [
        "Node-Functionality: AS (6)",
        "Accounting-Record-Type: Stop Record (4)",
        "Data-Reference: RepositoryData",
        "Public-Identity: sip:alice@example.org",
        "Disconnect-Cause: REBOOTING",
        "Experimental-Result-Code: DIAMETER_ERROR_USER_UNKNOWN",
    ] {
        assert!(
            v.to_ascii_lowercase().contains(&name.to_ascii_lowercase()),
            "tshark shows {name:?}"
        );
    }
}
