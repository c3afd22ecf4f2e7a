//! The relay tree's control calls to upstream relays ([`crate::tree::Action`]), run in tasks.
//!
//! How it fits: the driver loop never waits for another relay. For each action of the sans-IO
//! [`crate::tree::Tree`] it spawns a task that calls the upstream (the in-process
//! [`RelayHandle`], or `POST /viewers` / `DELETE /viewers/{id}` on its HTTP control API with a
//! minimal HTTP/1.1 client) under [`CONTROL_TIMEOUT`], and sends an attach's answer back into
//! the driver's own command channel as [`TreeCommand::AttachDone`] (through a weak sender, so
//! these tasks never keep a stopped relay alive).

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::control::{AddViewer, Command, Error, ViewerId, ViewerInfo};
use crate::tree::{Action, TreeCommand, Upstream, CONTROL_TIMEOUT};

/// An RTCP receiver report about `ssrc` (RFC 3550 section 6.4.2: one report block, counters
/// zero: the relay forwards, it does not judge the stream), sent by a pulling relay to its
/// upstream so that its copy stays alive there.
pub(crate) fn receiver_report(ssrc: u32) -> Vec<u8> {
    use rtcp_types::{ReceiverReport, ReportBlock, RtcpPacketWriter, RtcpPacketWriterExt};
    let rr =
        ReceiverReport::builder(ssrc ^ 0x7265_6c79).add_report_block(ReportBlock::builder(ssrc));
    let mut buf = vec![0u8; rr.calculate_size().unwrap_or(32)];
    match rr.write_into(&mut buf) {
        Ok(n) => buf.truncate(n),
        Err(_) => buf.clear(),
    }
    buf
}

/// Largest HTTP answer read from an upstream.
const MAX_ANSWER: u64 = 64 * 1024;

/// Run one tree action in its own task.
pub(crate) fn spawn_action(action: Action, back: mpsc::WeakSender<Command>) {
    match action {
        Action::Attach {
            channel,
            attempt,
            upstream,
            request,
        } => {
            tokio::spawn(async move {
                let viewer = request.viewer;
                let result =
                    match tokio::time::timeout(CONTROL_TIMEOUT, add(&upstream, request)).await {
                        Ok(Ok(info)) => Ok(info),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("no answer in time".to_owned()),
                    };
                if let Some(tx) = back.upgrade() {
                    let _ = tx
                        .send(Command::Tree(TreeCommand::AttachDone {
                            channel,
                            attempt,
                            upstream,
                            viewer,
                            result,
                        }))
                        .await;
                }
            });
        }
        Action::Detach { upstream, viewer } => {
            tokio::spawn(async move {
                let r = tokio::time::timeout(CONTROL_TIMEOUT, remove(&upstream, viewer)).await;
                if let Ok(Err(e)) = r {
                    tracing::debug!(%viewer, error = %e, "upstream detach failed");
                }
            });
        }
    }
}

async fn add(upstream: &Upstream, req: AddViewer) -> Result<ViewerInfo, Error> {
    match upstream {
        Upstream::Local(h) => h.add_viewer(req).await,
        Upstream::Http { control } => {
            let body = serde_json::to_vec(&req).map_err(|e| Error::Io(io::Error::other(e)))?;
            let (status, answer) = http(*control, "POST", "/viewers", &body).await?;
            check(status, &answer)?;
            serde_json::from_slice(&answer).map_err(|e| Error::Io(io::Error::other(e)))
        }
    }
}

async fn remove(upstream: &Upstream, viewer: ViewerId) -> Result<(), Error> {
    match upstream {
        Upstream::Local(h) => h.remove_viewer(viewer).await,
        Upstream::Http { control } => {
            let (status, answer) =
                http(*control, "DELETE", &format!("/viewers/{viewer}"), &[]).await?;
            check(status, &answer)
        }
    }
}

fn check(status: u16, answer: &[u8]) -> Result<(), Error> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    Err(Error::Io(io::Error::other(format!(
        "upstream answered {status}: {}",
        String::from_utf8_lossy(&answer[..answer.len().min(200)])
    ))))
}

/// One HTTP/1.1 request with `Connection: close`; the status and the body of the answer.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), Error> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req).await?;
    let mut answer = Vec::new();
    s.take(MAX_ANSWER).read_to_end(&mut answer).await?;
    parse_answer(&answer).ok_or_else(|| Error::Io(io::Error::other("malformed HTTP answer")))
}

/// Status code and body of an HTTP/1.1 answer (`Content-Length` or read to the end; chunked
/// bodies are decoded).
fn parse_answer(answer: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut chunked = false;
    let mut length: Option<usize> = None;
    for l in lines {
        let (k, v) = l.split_once(':')?;
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            length = v.parse().ok();
        } else if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let rest = &answer[end + 4..];
    let body = if chunked {
        let mut out = Vec::new();
        let mut r = rest;
        loop {
            let e = r.windows(2).position(|w| w == b"\r\n")?;
            let size = usize::from_str_radix(std::str::from_utf8(&r[..e]).ok()?.trim(), 16).ok()?;
            r = &r[e + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(r.get(..size)?);
            r = r.get(size + 2..)?;
        }
        out
    } else {
        match length {
            Some(n) => rest.get(..n)?.to_vec(),
            None => rest.to_vec(),
        }
    };
    Some((status, body))
}

#[cfg(test)]
mod tests {
    use super::parse_answer;

    #[test]
    fn receiver_report_names_the_upstreams_ssrc() {
        let rr = super::receiver_report(0xabcd);
        let mut blocks = Vec::new();
        let s = crate::rtcp::parse_compound(&rr, |r| blocks.push(r)).unwrap();
        assert_eq!(s.receiver_reports, 1);
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].source_ssrc, 0xabcd);
    }

    #[test]
    fn answers_parse_with_length_chunked_and_garbage() {
        let a = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_answer(a), Some((201, b"{}".to_vec())));
        let c =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n";
        assert_eq!(parse_answer(c), Some((200, b"abcd".to_vec())));
        assert_eq!(parse_answer(b"HTTP/1.1 20"), None);
        assert_eq!(parse_answer(b"junk\r\n\r\n"), None);
        let short = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}";
        assert_eq!(parse_answer(short), None);
    }
}
