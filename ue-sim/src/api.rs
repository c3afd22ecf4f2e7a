//! A minimal client of the AS's HTTP API for polls and channel quality (README "HTTP API"):
//! `POST /api/polls`, `GET /api/polls/{id}`, `GET /api/channels/{id}/quality`.
//!
//! One HTTP/1.1 request per connection (`Connection: close`) over tokio's `TcpStream`,
//! bounded by [`TIMEOUT`] and [`MAX_BODY`]; the body is read to the end and de-chunked when
//! the AS sends it chunked. Enough for a handful of requests per second from the run
//! driver; no HTTP crate needed. Parsing the figures out of the JSON is here too
//! ([`poll_tally`], [`quality`]), so the driver only sees [`PollTallyRead`] and
//! [`ChannelQualityFigures`].

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stats::ChannelQualityFigures;

/// Longest wait for one request.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// Largest response accepted.
pub const MAX_BODY: usize = 1 << 20;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Connect, write or read failed.
    #[error("HTTP I/O: {0}")]
    Io(#[from] std::io::Error),
    /// No answer in time.
    #[error("HTTP request timed out")]
    Timeout,
    /// Not an HTTP response, or too big.
    #[error("bad HTTP response: {0}")]
    Bad(String),
    /// An answer other than the expected status.
    #[error("HTTP {0}: {1}")]
    Status(u16, String),
    /// The body is not the JSON expected.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// One request; `(status, body)`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, Vec<u8>), ApiError> {
    tokio::time::timeout(TIMEOUT, request_inner(addr, method, path, body))
        .await
        .map_err(|_| ApiError::Timeout)?
}

async fn request_inner(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, Vec<u8>), ApiError> {
    let mut s = TcpStream::connect(addr).await?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Accept: application/json\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > MAX_BODY {
            return Err(ApiError::Bad("response too large".into()));
        }
    }
    parse_response(&raw)
}

/// `(status, body)` of a whole HTTP/1.1 response (chunked bodies de-chunked).
pub fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), ApiError> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| ApiError::Bad("no header end".into()))?;
    let head = std::str::from_utf8(&raw[..head_end])
        .map_err(|_| ApiError::Bad("header not UTF-8".into()))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| ApiError::Bad("no status code".into()))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &raw[head_end + 4..];
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| ApiError::Bad("truncated chunk".into()))?;
        let size_text = std::str::from_utf8(&rest[..line_end])
            .map_err(|_| ApiError::Bad("chunk size".into()))?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| ApiError::Bad("chunk size".into()))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            break;
        }
        if rest.len() < size {
            return Err(ApiError::Bad("truncated chunk".into()));
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
    Ok((status, out))
}

/// `POST /api/polls`: declares `poll` on `channel` (201 expected).
pub async fn create_poll(
    addr: SocketAddr,
    poll: u32,
    channel: &str,
    question: &str,
    options: &[String],
) -> Result<(), ApiError> {
    let body = serde_json::json!({
        "channel": channel,
        "poll": poll,
        "question": question,
        "options": options,
    })
    .to_string();
    let (st, b) = request(addr, "POST", "/api/polls", Some(&body)).await?;
    if st != 201 {
        return Err(ApiError::Status(st, String::from_utf8_lossy(&b).into()));
    }
    Ok(())
}

/// A poll's tally as the AS answered it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollTallyRead {
    /// Votes per declared option, in order.
    pub options: Vec<u64>,
    /// Votes for undeclared options.
    pub undeclared: u64,
    /// Relays that answered.
    pub relays: u64,
}

/// The figures of a `GET /api/polls/{id}` body.
pub fn poll_tally(body: &[u8]) -> Result<PollTallyRead, ApiError> {
    let v: serde_json::Value = serde_json::from_slice(body)?;
    let options = v["options"]
        .as_array()
        .ok_or_else(|| ApiError::Bad("no options in the tally".into()))?
        .iter()
        .map(|o| o["votes"].as_u64().unwrap_or(0))
        .collect();
    let undeclared = v["undeclared"]
        .as_object()
        .map(|m| m.values().filter_map(serde_json::Value::as_u64).sum())
        .unwrap_or(0);
    Ok(PollTallyRead {
        options,
        undeclared,
        relays: v["relays"].as_u64().unwrap_or(0),
    })
}

/// `GET /api/polls/{poll}`.
pub async fn get_poll(addr: SocketAddr, poll: u32) -> Result<PollTallyRead, ApiError> {
    let (st, b) = request(addr, "GET", &format!("/api/polls/{poll}"), None).await?;
    if st != 200 {
        return Err(ApiError::Status(st, String::from_utf8_lossy(&b).into()));
    }
    poll_tally(&b)
}

/// The figures of a `GET /api/channels/{id}/quality` body (`at_s` left 0).
pub fn quality(channel: &str, body: &[u8]) -> Result<ChannelQualityFigures, ApiError> {
    let v: serde_json::Value = serde_json::from_slice(body)?;
    let s = &v["summary"];
    let u32_of = |x: &serde_json::Value| x.as_u64().and_then(|n| u32::try_from(n).ok());
    Ok(ChannelQualityFigures {
        channel: channel.to_owned(),
        at_s: 0.0,
        relays: v["relays"].as_u64().unwrap_or(0),
        viewers_reporting: s["viewers_reporting"].as_u64().unwrap_or(0),
        viewers_heard: s["viewers_heard"].as_u64().unwrap_or(0),
        voters: s["voters"].as_u64().unwrap_or(0),
        loss_median: u32_of(&s["loss"]["median"]),
        loss_p95: u32_of(&s["loss"]["p95"]),
        loss_median_bin: quantile_bin(&s["loss"], 0.5),
        loss_p95_bin: quantile_bin(&s["loss"], 0.95),
        jitter_median_bin: quantile_bin(&s["jitter"], 0.5),
        jitter_p95_bin: quantile_bin(&s["jitter"], 0.95),
        rtt_ms_median_bin: quantile_bin(&s["rtt_ms"], 0.5),
        rtt_ms_p95_bin: quantile_bin(&s["rtt_ms"], 0.95),
        jitter_median: u32_of(&s["jitter"]["median"]),
        jitter_p95: u32_of(&s["jitter"]["p95"]),
        rtt_ms_median: u32_of(&s["rtt_ms"]["median"]),
        rtt_ms_p95: u32_of(&s["rtt_ms"]["p95"]),
        rtt_count: s["rtt_ms"]["count"].as_u64().unwrap_or(0),
    })
}

/// The bin `[from, to)` of a quality distribution (`{"bin_min", "bin_max", "counts"}`) that holds
/// quantile `q` of its observations; `None` when it has none or the bins are missing.
fn quantile_bin(d: &serde_json::Value, q: f64) -> Option<[u32; 2]> {
    let min = d["bin_min"].as_u64()?;
    let max = d["bin_max"].as_u64()?;
    let counts: Vec<u64> = d["counts"]
        .as_array()?
        .iter()
        .map(|c| c.as_u64().unwrap_or(0))
        .collect();
    let total: u64 = counts.iter().sum();
    if total == 0 || max <= min {
        return None;
    }
    let width = (max - min) as f64 / counts.len() as f64;
    let want = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= want {
            let from = min as f64 + i as f64 * width;
            let to = min as f64 + (i + 1) as f64 * width;
            return Some([from.round() as u32, to.round() as u32]);
        }
    }
    None
}

/// `GET /api/channels/{channel}/quality`.
pub async fn get_quality(
    addr: SocketAddr,
    channel: &str,
) -> Result<ChannelQualityFigures, ApiError> {
    let (st, b) = request(
        addr,
        "GET",
        &format!("/api/channels/{channel}/quality"),
        None,
    )
    .await?;
    if st != 200 {
        return Err(ApiError::Status(st, String::from_utf8_lossy(&b).into()));
    }
    quality(channel, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_plain_and_chunked() {
        let (st, b) = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((st, b.as_slice()), (200, b"{}".as_slice()));
        let raw = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
        let (st, b) = parse_response(raw).unwrap();
        assert_eq!((st, b.as_slice()), (201, b"{\"a\":1}".as_slice()));
        assert!(parse_response(b"garbage").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }

    #[test]
    fn tally_and_quality_figures() {
        let t = poll_tally(
            br#"{"poll":1,"channel":"news","question":"?","options":[{"option":0,"label":"a","votes":3},{"option":1,"label":"b","votes":0}],"undeclared":{"7":2},"total_votes":5,"relays":1}"#,
        )
        .unwrap();
        assert_eq!(t.options, [3, 0]);
        assert_eq!((t.undeclared, t.relays), (2, 1));
        let q = quality(
            "news",
            br#"{"relays":1,"summary":{"channel":"news","viewers_reporting":9,"viewers_heard":10,"loss":{"count":9,"median":8,"p95":8},"jitter":{"count":9,"median":562,"p95":1687},"rtt_ms":{"count":9,"median":25,"p95":75},"votes":{},"voters":4}}"#,
        )
        .unwrap();
        assert_eq!(q.viewers_reporting, 9);
        assert_eq!(q.voters, 4);
        assert_eq!((q.rtt_ms_median, q.rtt_count), (Some(25), 9));
        assert_eq!(q.jitter_p95, Some(1687));
        assert_eq!(q.loss_median_bin, None, "no bins in the body: no range");
        // Nothing lost by 9 of 10, 40/256 by one: the median bin starts at 0 (its centre, 8,
        // is what "median" says), the p95 bin holds the lossy viewer.
        let q = quality(
            "news",
            br#"{"relays":1,"summary":{"loss":{"count":10,"median":8,"p95":40,"bin_min":0,"bin_max":256,"counts":[9,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0]}}}"#,
        )
        .unwrap();
        assert_eq!(q.loss_median_bin, Some([0, 16]));
        assert_eq!(q.loss_p95_bin, Some([32, 48]));
        let q = quality(
            "news",
            br#"{"summary":{"loss":{"bin_min":0,"bin_max":256,"counts":[0,0]}}}"#,
        )
        .unwrap();
        assert_eq!(
            q.loss_median_bin, None,
            "an empty distribution has no median"
        );
    }
}
