//! Zap-time measurement client: re-INVITE zap versus BYE + new INVITE, against a running AS.
//!
//! A measurement client, not a test: it boots nothing and targets an AS that is already
//! running (`--target 127.0.0.1:5060`; `scripts/bench-zap.sh` boots the standalone one). It
//! speaks SIP over UDP with the as-server codec ([`as_server::sip`]) and an SDP offer from
//! [`as_server::sip::sdp::OfferBuilder`], and receives RTP on a local UDP socket.
//!
//! 1. **re-INVITE** (the in-dialog zap, see `as_server::service`): join the first channel
//!    (INVITE with a recvonly H.264 offer, 200, ACK), wait for the picture, then `--zaps` times
//!    send a re-INVITE in the same dialog whose Request-URI user part names the other channel.
//!    Measured from sending the re-INVITE: to its `200 OK`, and to the first RTP packet that
//!    starts a decodable key frame (H.264 SPS or IDR as a single NAL, inside a STAP-A, or in
//!    the first FU-A fragment, RFC 6184 sections 5.6-5.8). SSRC and sequence numbers continue
//!    across the zap, so the new channel is recognised by that key frame: the relay starts the
//!    new source with a burst from its last key frame, and the burst can arrive before the
//!    `200 OK`, so the key frame is taken from the moment the re-INVITE is sent. To keep the old
//!    channel's own key frames out of that window, each zap is sent 200 ms after a live key
//!    frame of the channel being watched (the test pattern has one every 2 s).
//! 2. **BYE + INVITE**: `--zaps` times: BYE the session, wait for its `200 OK`, INVITE the
//!    other channel as a new dialog with a fresh RTP port (so nothing of the old session can be
//!    mistaken for the new one). Measured from sending the BYE: to the new INVITE's `200 OK`,
//!    and to the new session's first key-frame packet.
//!
//! Results: p50/p90/p99/max in milliseconds, a table on stdout and JSON in `--out`. Every wait
//! is bounded (`--timeout-ms`); a zap that times out is counted as failed and the run goes on.
//!
//! Run: `cargo run --release -p as-server --example zap_bench -- --target 127.0.0.1:5060`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use clap::Parser;
use serde::Serialize;
use tokio::net::UdpSocket;

use as_server::sip::sdp::{CodecSpec, Direction, OfferBuilder, OfferedMedia};
use as_server::sip::{HeaderName, Message, Method, Request, Response, StatusCode, Uri};

/// Zap time: re-INVITE versus BYE + INVITE, against a running AS.
#[derive(Debug, Parser)]
struct Args {
    /// The AS's SIP UDP address.
    #[arg(long, default_value = "127.0.0.1:5060")]
    target: SocketAddr,
    /// Local IP for SIP and RTP.
    #[arg(long, default_value = "127.0.0.1")]
    local_ip: IpAddr,
    /// SIP domain for the channel URIs (default: the target's IP).
    #[arg(long)]
    domain: Option<String>,
    /// The two channels to alternate between.
    #[arg(long, value_delimiter = ',', default_value = "news,sport")]
    channels: Vec<String>,
    /// Zaps per method.
    #[arg(long, default_value_t = 50)]
    zaps: usize,
    /// Longest wait for any response or key frame, in ms.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Watch time after a zap before the next one (BYE + INVITE), in ms.
    #[arg(long, default_value_t = 300)]
    dwell_ms: u64,
    /// Write the JSON results here.
    #[arg(long, default_value = "ci-artifacts/bench/zap.json")]
    out: PathBuf,
}

#[expect(
    clippy::disallowed_methods,
    reason = "a measurement client reads the clock to time what it measures; the one clock read"
)]
fn now() -> Instant {
    Instant::now()
}

/// A re-INVITE zap whose key frame comes later than this is not counted (see `settle`).
const LATE_KEY_MS: f64 = 1000.0;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ----- RTP side ----------------------------------------------------------------------------------

/// Whether an RTP datagram's payload starts an H.264 key frame (SPS or IDR; RFC 6184).
/// Returns the RTP timestamp with the answer, or None for a datagram that is not RTP.
fn key_frame_start(d: &[u8]) -> Option<(bool, u32)> {
    if d.len() < 12 || d[0] >> 6 != 2 {
        return None;
    }
    let pt = d[1] & 0x7f;
    if (72..=76).contains(&pt) {
        return None; // RTCP
    }
    let ts = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
    let mut off = 12 + 4 * usize::from(d[0] & 0x0f);
    if d[0] & 0x10 != 0 {
        let ext = d.get(off + 2..off + 4)?;
        off += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let mut end = d.len();
    if d[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*d.last()?))?;
    }
    let p = d.get(off..end)?;
    let is_key = |t: u8| t == 5 || t == 7;
    let key = match p.first().map(|b| b & 0x1f) {
        Some(24) => {
            // STAP-A: 16-bit size, NAL unit, repeated (section 5.7.1).
            let mut i = 1;
            let mut key = false;
            while i + 2 < p.len() {
                let n = usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
                key |= is_key(p[i + 2] & 0x1f);
                i += 2 + n;
            }
            key
        }
        // FU-A: start bit and the fragmented NAL type (section 5.8).
        Some(28) => p.get(1).is_some_and(|h| h & 0x80 != 0 && is_key(h & 0x1f)),
        Some(t) => is_key(t),
        None => false,
    };
    Some((key, ts))
}

/// One RTP receiving port and what has been seen on it.
struct Rtp {
    sock: UdpSocket,
    port: u16,
    packets: u64,
    /// RTP timestamp of the last key frame started (one key frame spans several packets).
    last_key_ts: Option<u32>,
    key_frames: u64,
}

impl Rtp {
    async fn bind(ip: IpAddr) -> anyhow::Result<Rtp> {
        let sock = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let port = sock.local_addr()?.port();
        Ok(Rtp {
            sock,
            port,
            packets: 0,
            last_key_ts: None,
            key_frames: 0,
        })
    }

    /// Counts a datagram; true when it starts a new key frame.
    fn on_datagram(&mut self, d: &[u8]) -> bool {
        let Some((key, ts)) = key_frame_start(d) else {
            return false;
        };
        self.packets += 1;
        if key && self.last_key_ts != Some(ts) {
            self.last_key_ts = Some(ts);
            self.key_frames += 1;
            return true;
        }
        false
    }
}

// ----- SIP side ----------------------------------------------------------------------------------

/// A client transaction in flight (UDP retransmission per RFC 3261 section 17.1.1.2 / 17.1.2.2,
/// T1 = 500 ms doubling, capped at 4 s).
struct Pending {
    bytes: Vec<u8>,
    call_id: String,
    cseq: u32,
    method: Method,
    next_retx: Instant,
    interval: Duration,
    retransmits: u32,
}

/// An established dialog (UAC side).
struct Dialog {
    call_id: String,
    local_tag: String,
    /// To header of the requests, with the AS's tag.
    remote_to: String,
    /// The AS's Contact: where in-dialog requests go (its user part is the channel watched).
    remote_target: Uri,
    cseq: u32,
    channel: String,
    rtp: Rtp,
}

/// What a wait ended with.
#[derive(Default)]
struct Waited {
    response: Option<(Response, Instant)>,
    key_at: Option<Instant>,
    retransmits: u32,
}

struct Client {
    sip: UdpSocket,
    local: SocketAddr,
    target: SocketAddr,
    domain: String,
    timeout: Duration,
    counter: u64,
    buf: Vec<u8>,
    rbuf: Vec<u8>,
    offer_version: u64,
}

impl Client {
    fn next_id(&mut self, what: &str) -> String {
        self.counter += 1;
        format!("{what}{}x{}", std::process::id(), self.counter)
    }

    fn offer(&mut self, rtp_port: u16) -> anyhow::Result<Bytes> {
        self.offer_version += 1;
        let offer = OfferBuilder::new(self.local.ip(), 4242)
            .session_name("zap_bench")
            .session_version(self.offer_version)
            .media(
                OfferedMedia::new(
                    as_server::sip::sdp::MediaKind::Video,
                    rtp_port,
                    Direction::RecvOnly,
                )
                .codec(96, CodecSpec::h264()),
            )
            .build()?;
        Ok(Bytes::from(offer.to_bytes()))
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "a SIP request has this many parts"
    )]
    fn request(
        &mut self,
        method: Method,
        uri: Uri,
        call_id: &str,
        local_tag: &str,
        to: &str,
        cseq: u32,
        body: Option<Bytes>,
    ) -> Request {
        let mut r = Request::new(method.clone(), uri);
        let branch = self.next_id("z9hG4bK");
        let h = &mut r.headers;
        h.push(
            HeaderName::VIA,
            format!("SIP/2.0/UDP {};branch={branch};rport", self.local),
        );
        h.push(HeaderName::MAX_FORWARDS, "70");
        h.push(
            HeaderName::FROM,
            format!("<sip:zap-bench@{}>;tag={local_tag}", self.local),
        );
        h.push(HeaderName::TO, to);
        h.push(HeaderName::CALL_ID, call_id);
        h.push(HeaderName::CSEQ, format!("{cseq} {}", method.as_str()));
        h.push(
            HeaderName::CONTACT,
            format!("<sip:zap-bench@{}>", self.local),
        );
        h.push(HeaderName::USER_AGENT, "zap_bench");
        if let Some(b) = body {
            h.push(HeaderName::CONTENT_TYPE, "application/sdp");
            r.body = b;
        }
        r
    }

    async fn send(&mut self, req: &Request, dest: SocketAddr) -> anyhow::Result<Vec<u8>> {
        self.buf.clear();
        req.encode(&mut self.buf);
        self.sip.send_to(&self.buf, dest).await?;
        Ok(self.buf.clone())
    }

    async fn start_tx(&mut self, req: &Request) -> anyhow::Result<Pending> {
        let bytes = self.send(req, self.target).await?;
        let cseq = req.cseq()?;
        Ok(Pending {
            bytes,
            call_id: req.call_id()?.to_owned(),
            cseq: cseq.seq,
            method: cseq.method,
            next_retx: now() + Duration::from_millis(500),
            interval: Duration::from_millis(500),
            retransmits: 0,
        })
    }

    /// Answers a request from the AS (NOTIFY, BYE of a dropped session...) with 200.
    async fn answer(&mut self, req: &Request, from: SocketAddr) -> anyhow::Result<()> {
        if req.method == Method::ACK {
            return Ok(());
        }
        let resp = Response::for_request(req, StatusCode::OK, "OK").with_to_tag("zb");
        self.buf.clear();
        resp.encode(&mut self.buf);
        self.sip.send_to(&self.buf, from).await?;
        Ok(())
    }

    /// Pumps SIP and RTP until the transaction (if any) has its final response and, when
    /// `need_key`, a new key frame started on `rtp`; or until `deadline` (then it returns what
    /// it has). Provisional responses are skipped.
    async fn wait(
        &mut self,
        mut tx: Option<&mut Pending>,
        rtp: Option<&mut Rtp>,
        need_key: bool,
        deadline: Instant,
    ) -> anyhow::Result<Waited> {
        let mut out = Waited::default();
        let mut rtp = rtp;
        let mut rtp_buf = vec![0u8; 2048];
        loop {
            let done_tx = tx.is_none() || out.response.is_some();
            let done_key = !need_key || out.key_at.is_some();
            if done_tx && done_key {
                return Ok(out);
            }
            let t = now();
            if t >= deadline {
                return Ok(out);
            }
            let mut wake = deadline;
            if let Some(p) = tx.as_deref() {
                if out.response.is_none() {
                    wake = wake.min(p.next_retx);
                }
            }
            let rtp_recv = async {
                match rtp.as_deref() {
                    Some(r) => r.sock.recv(&mut rtp_buf).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.sip.recv_from(&mut self.rbuf) => {
                    let (len, from) = r?;
                    let at = now();
                    let Ok(msg) = Message::parse(&self.rbuf[..len]) else { continue };
                    match msg {
                        Message::Request(req) => self.answer(&req, from).await?,
                        Message::Response(resp) => {
                            let Some(p) = tx.as_deref() else { continue };
                            let (Ok(cseq), Ok(cid)) = (resp.cseq(), resp.call_id()) else {
                                continue;
                            };
                            if cseq.seq == p.cseq && cseq.method == p.method && cid == p.call_id
                                && resp.status.is_final() && out.response.is_none()
                            {
                                out.response = Some((resp, at));
                            }
                        }
                    }
                }
                r = rtp_recv => {
                    let len = r?;
                    let at = now();
                    if let Some(rtp) = rtp.as_deref_mut() {
                        if rtp.on_datagram(&rtp_buf[..len]) && out.key_at.is_none() {
                            out.key_at = Some(at);
                        }
                    }
                }
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                    if let Some(p) = tx.as_deref_mut() {
                        if out.response.is_none() && now() >= p.next_retx {
                            self.sip.send_to(&p.bytes, self.target).await?;
                            p.retransmits += 1;
                            out.retransmits += 1;
                            p.interval = (p.interval * 2).min(Duration::from_secs(4));
                            p.next_retx = now() + p.interval;
                        }
                    }
                }
            }
        }
    }

    fn channel_uri(&self, channel: &str) -> anyhow::Result<Uri> {
        Uri::parse(&format!(
            "sip:{channel}@{}:{}",
            self.domain,
            self.target.port()
        ))
        .map_err(|_| anyhow!("bad channel URI for {channel}"))
    }

    /// ACK for a 2xx (a new transaction, RFC 3261 section 13.2.2.4) or for a non-2xx final
    /// (same branch as the INVITE; here the AS absorbs either form).
    async fn ack(&mut self, d: &Dialog, cseq: u32) -> anyhow::Result<()> {
        let ack = self.request(
            Method::ACK,
            d.remote_target.clone(),
            &d.call_id.clone(),
            &d.local_tag.clone(),
            &d.remote_to.clone(),
            cseq,
            None,
        );
        self.send(&ack, self.target).await?;
        Ok(())
    }

    /// INVITE `channel` as a new dialog with `rtp` as the media port. Returns the dialog and
    /// the wait (200 time, first key frame time).
    async fn join(&mut self, channel: &str, rtp: Rtp) -> anyhow::Result<(Dialog, Waited)> {
        let call_id = self.next_id("zapbench-");
        let local_tag = self.next_id("t");
        let uri = self.channel_uri(channel)?;
        let to = format!("<{uri}>");
        let body = self.offer(rtp.port)?;
        let req = self.request(
            Method::INVITE,
            uri.clone(),
            &call_id,
            &local_tag,
            &to,
            1,
            Some(body),
        );
        let mut p = self.start_tx(&req).await?;
        let mut d = Dialog {
            call_id,
            local_tag,
            remote_to: to,
            remote_target: uri,
            cseq: 1,
            channel: channel.to_owned(),
            rtp,
        };
        let deadline = now() + self.timeout;
        let mut w = self
            .wait(Some(&mut p), Some(&mut d.rtp), true, deadline)
            .await?;
        let Some((resp, _)) = w.response.as_ref() else {
            bail!("no final response to the INVITE for {channel}");
        };
        if !resp.status.is_success() {
            let code = resp.status.0;
            if let Ok(to) = resp.to() {
                d.remote_to = to_header(&to.uri, to.tag());
            }
            self.ack(&d, 1).await?;
            bail!("INVITE for {channel} answered {code}");
        }
        let to = resp.to()?;
        d.remote_to = to_header(&to.uri, to.tag());
        if let Some(c) = resp.contact()? {
            d.remote_target = c.uri;
        }
        self.ack(&d, 1).await?;
        // The key frame may still be on its way after the 200.
        if w.key_at.is_none() {
            let more = self.wait(None, Some(&mut d.rtp), true, deadline).await?;
            w.key_at = more.key_at;
        }
        Ok((d, w))
    }

    /// Wait until a live key frame of the watched channel went by, then 200 ms more: the old
    /// channel's next key frame is then about 1.8 s away, far outside any zap window.
    async fn settle(&mut self, d: &mut Dialog) -> anyhow::Result<()> {
        let w = self
            .wait(None, Some(&mut d.rtp), true, now() + self.timeout)
            .await?;
        if w.key_at.is_none() {
            bail!("no live key frame on {} within the timeout", d.channel);
        }
        self.wait(
            None,
            Some(&mut d.rtp),
            false,
            now() + Duration::from_millis(200),
        )
        .await?;
        Ok(())
    }

    async fn bye(&mut self, d: &mut Dialog) -> anyhow::Result<Waited> {
        d.cseq += 1;
        let req = self.request(
            Method::BYE,
            d.remote_target.clone(),
            &d.call_id.clone(),
            &d.local_tag.clone(),
            &d.remote_to.clone(),
            d.cseq,
            None,
        );
        let mut p = self.start_tx(&req).await?;
        let deadline = now() + self.timeout;
        self.wait(Some(&mut p), Some(&mut d.rtp), false, deadline)
            .await
    }
}

fn to_header(uri: &Uri, tag: Option<&str>) -> String {
    match tag {
        Some(t) => format!("<{uri}>;tag={t}"),
        None => format!("<{uri}>"),
    }
}

// ----- statistics --------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct Summary {
    n: usize,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    mean_ms: f64,
}

/// Nearest-rank percentiles.
fn summary(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some(Summary {
        n: v.len(),
        p50_ms: rank(0.5),
        p90_ms: rank(0.9),
        p99_ms: rank(0.99),
        max_ms: v[v.len() - 1],
        mean_ms: v.iter().sum::<f64>() / v.len() as f64,
    })
}

#[derive(Debug, Serialize)]
struct ZapSample {
    from: String,
    to: String,
    /// Re-INVITE: from sending it to its 200. BYE + INVITE: from sending the BYE to the new
    /// INVITE's 200.
    to_200_ms: Option<f64>,
    /// From the same start to the first key-frame packet of the new channel.
    to_key_frame_ms: Option<f64>,
    /// BYE + INVITE only: from sending the BYE to its 200.
    bye_200_ms: Option<f64>,
    retransmits: u32,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Method2 {
    method: &'static str,
    samples: Vec<ZapSample>,
    failed: usize,
    to_200: Option<Summary>,
    to_key_frame: Option<Summary>,
    /// BYE + INVITE only: BYE to its 200.
    bye_200: Option<Summary>,
}

#[derive(Debug, Serialize)]
struct Report {
    tool: &'static str,
    target: SocketAddr,
    channels: Vec<String>,
    zaps_per_method: usize,
    loadavg_start: String,
    loadavg_end: String,
    reinvite: Method2,
    bye_invite: Method2,
}

fn finish(method: &'static str, samples: Vec<ZapSample>) -> Method2 {
    let ok: Vec<&ZapSample> = samples.iter().filter(|s| s.error.is_none()).collect();
    let to_200: Vec<f64> = ok.iter().filter_map(|s| s.to_200_ms).collect();
    let to_key: Vec<f64> = ok.iter().filter_map(|s| s.to_key_frame_ms).collect();
    let bye: Vec<f64> = ok.iter().filter_map(|s| s.bye_200_ms).collect();
    Method2 {
        method,
        failed: samples.len() - ok.len(),
        to_200: summary(&to_200),
        to_key_frame: summary(&to_key),
        bye_200: summary(&bye),
        samples,
    }
}

// ----- the two runs ------------------------------------------------------------------------------

async fn run_reinvite(c: &mut Client, args: &Args) -> anyhow::Result<Vec<ZapSample>> {
    let first = &args.channels[0];
    println!("== re-INVITE: join {first}");
    let rtp = Rtp::bind(c.local.ip()).await?;
    let (mut d, w) = c.join(first, rtp).await?;
    if w.key_at.is_none() {
        bail!("no key frame after joining {first}");
    }
    let mut samples = Vec::with_capacity(args.zaps);
    for i in 0..args.zaps {
        let from = d.channel.clone();
        let to = args.channels[(i + 1) % args.channels.len()].clone();
        let mut s = ZapSample {
            from: from.clone(),
            to: to.clone(),
            to_200_ms: None,
            to_key_frame_ms: None,
            bye_200_ms: None,
            retransmits: 0,
            error: None,
        };
        if let Err(e) = c.settle(&mut d).await {
            s.error = Some(format!("{e:#}"));
            println!("   re-INVITE {}/{} {from}->{to}: {e:#}", i + 1, args.zaps);
            samples.push(s);
            continue;
        }
        d.cseq += 1;
        let mut uri = d.remote_target.clone();
        uri.user = Some(to.clone());
        let body = c.offer(d.rtp.port)?;
        let req = c.request(
            Method::INVITE,
            uri,
            &d.call_id.clone(),
            &d.local_tag.clone(),
            &d.remote_to.clone(),
            d.cseq,
            Some(body),
        );
        let t0 = now();
        let mut p = c.start_tx(&req).await?;
        let w = c
            .wait(Some(&mut p), Some(&mut d.rtp), true, t0 + c.timeout)
            .await?;
        s.retransmits = w.retransmits;
        s.to_key_frame_ms = w.key_at.map(|t| ms(t - t0));
        match &w.response {
            Some((resp, at)) if resp.status.is_success() => {
                s.to_200_ms = Some(ms(*at - t0));
                if let Some(contact) = resp.contact()? {
                    d.remote_target = contact.uri;
                }
                d.channel = to.clone();
                c.ack(&d, d.cseq).await?;
                match s.to_key_frame_ms {
                    None => s.error = Some("no key frame within the timeout".into()),
                    // The old channel's next IDR is ~1.8 s away (see `settle`): a key frame this
                    // late may be that one rather than the new channel's burst.
                    Some(t) if t > LATE_KEY_MS => {
                        s.error = Some(format!("key frame after {t:.0} ms: not surely the burst"));
                    }
                    Some(_) => {}
                }
            }
            Some((resp, _)) => {
                c.ack(&d, d.cseq).await?;
                s.error = Some(format!("re-INVITE answered {}", resp.status.0));
            }
            None => s.error = Some("no final response to the re-INVITE".into()),
        }
        println!(
            "   re-INVITE {}/{} {from}->{to}: 200 OK {} ms, key frame {} ms{}{}",
            i + 1,
            args.zaps,
            fmt_ms(s.to_200_ms),
            fmt_ms(s.to_key_frame_ms),
            if s.retransmits > 0 {
                format!(" ({} retransmits)", s.retransmits)
            } else {
                String::new()
            },
            s.error
                .as_deref()
                .map_or(String::new(), |e| format!(" ERROR {e}"))
        );
        samples.push(s);
    }
    let w = c.bye(&mut d).await?;
    if w.response.is_none() {
        println!("   (no answer to the final BYE)");
    }
    Ok(samples)
}

async fn run_bye_invite(c: &mut Client, args: &Args) -> anyhow::Result<Vec<ZapSample>> {
    let first = &args.channels[0];
    println!("== BYE + INVITE: join {first}");
    let rtp = Rtp::bind(c.local.ip()).await?;
    let (mut d, w) = c.join(first, rtp).await?;
    if w.key_at.is_none() {
        bail!("no key frame after joining {first}");
    }
    let mut samples = Vec::with_capacity(args.zaps);
    for i in 0..args.zaps {
        let from = d.channel.clone();
        let to = args.channels[(i + 1) % args.channels.len()].clone();
        let mut s = ZapSample {
            from: from.clone(),
            to: to.clone(),
            to_200_ms: None,
            to_key_frame_ms: None,
            bye_200_ms: None,
            retransmits: 0,
            error: None,
        };
        // Watch a little (drains the socket), as a viewer would between zaps.
        c.wait(
            None,
            Some(&mut d.rtp),
            false,
            now() + Duration::from_millis(args.dwell_ms),
        )
        .await?;
        let t0 = now();
        let bw = c.bye(&mut d).await?;
        s.retransmits += bw.retransmits;
        match &bw.response {
            Some((r, at)) if r.status.is_success() => s.bye_200_ms = Some(ms(*at - t0)),
            Some((r, _)) => s.error = Some(format!("BYE answered {}", r.status.0)),
            None => s.error = Some("no final response to the BYE".into()),
        }
        // A fresh RTP port: nothing of the old session can count for the new one.
        let rtp = Rtp::bind(c.local.ip()).await?;
        match c.join(&to, rtp).await {
            Ok((nd, w)) => {
                s.retransmits += w.retransmits;
                s.to_200_ms = w.response.as_ref().map(|(_, at)| ms(*at - t0));
                s.to_key_frame_ms = w.key_at.map(|t| ms(t - t0));
                if s.to_key_frame_ms.is_none() && s.error.is_none() {
                    s.error = Some("no key frame within the timeout".into());
                }
                d = nd;
            }
            Err(e) => {
                s.error = Some(format!("{e:#}"));
                println!("   BYE+INVITE {}/{} {from}->{to}: {e:#}", i + 1, args.zaps);
                samples.push(s);
                // Rejoin where we were so the run can go on.
                let rtp = Rtp::bind(c.local.ip()).await?;
                d = c.join(&from, rtp).await?.0;
                continue;
            }
        }
        println!(
            "   BYE+INVITE {}/{} {from}->{to}: BYE 200 {} ms, INVITE 200 {} ms, key frame {} ms{}{}",
            i + 1,
            args.zaps,
            fmt_ms(s.bye_200_ms),
            fmt_ms(s.to_200_ms),
            fmt_ms(s.to_key_frame_ms),
            if s.retransmits > 0 {
                format!(" ({} retransmits)", s.retransmits)
            } else {
                String::new()
            },
            s.error.as_deref().map_or(String::new(), |e| format!(" ERROR {e}"))
        );
        samples.push(s);
    }
    let w = c.bye(&mut d).await?;
    if w.response.is_none() {
        println!("   (no answer to the final BYE)");
    }
    Ok(samples)
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.2}"))
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn row(name: &str, what: &str, s: Option<&Summary>, failed: usize) {
    match s {
        Some(s) => println!(
            "| {name} | {what} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {failed} |",
            s.n, s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms
        ),
        None => println!("| {name} | {what} | 0 | - | - | - | - | {failed} |"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.channels.len() < 2 {
        bail!("need two channels to zap between");
    }
    if args.zaps == 0 || args.zaps > 10_000 || args.timeout_ms == 0 || args.timeout_ms > 60_000 {
        bail!("zaps 1..10000, timeout 1..60000 ms");
    }
    let sip = UdpSocket::bind(SocketAddr::new(args.local_ip, 0))
        .await
        .context("binding the SIP socket")?;
    let local = sip.local_addr()?;
    let mut c = Client {
        sip,
        local,
        target: args.target,
        domain: args
            .domain
            .clone()
            .unwrap_or_else(|| args.target.ip().to_string()),
        timeout: Duration::from_millis(args.timeout_ms),
        counter: 0,
        buf: Vec::with_capacity(2048),
        rbuf: vec![0u8; 65_536],
        offer_version: 0,
    };
    let loadavg_start = read_trim("/proc/loadavg");
    println!(
        "zap_bench: AS {} from {local}, channels {}, {} zaps per method, load average {loadavg_start}",
        args.target,
        args.channels.join(","),
        args.zaps
    );
    let reinvite = finish("re-INVITE", run_reinvite(&mut c, &args).await?);
    let bye_invite = finish("BYE + INVITE", run_bye_invite(&mut c, &args).await?);
    let report = Report {
        tool: "as-server/examples/zap_bench.rs",
        target: args.target,
        channels: args.channels.clone(),
        zaps_per_method: args.zaps,
        loadavg_start,
        loadavg_end: read_trim("/proc/loadavg"),
        reinvite,
        bye_invite,
    };
    println!();
    println!("| method | measured (from sending the re-INVITE / the BYE) | zaps | p50 ms | p90 ms | p99 ms | max ms | failed |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let r = &report.reinvite;
    row("re-INVITE", "to 200 OK", r.to_200.as_ref(), r.failed);
    row(
        "re-INVITE",
        "to first key-frame packet of the new channel",
        r.to_key_frame.as_ref(),
        r.failed,
    );
    let b = &report.bye_invite;
    row(
        "BYE + INVITE",
        "BYE to its 200 OK",
        b.bye_200.as_ref(),
        b.failed,
    );
    row(
        "BYE + INVITE",
        "to the new INVITE's 200 OK",
        b.to_200.as_ref(),
        b.failed,
    );
    row(
        "BYE + INVITE",
        "to first key-frame packet of the new session",
        b.to_key_frame.as_ref(),
        b.failed,
    );
    if let Some(dir) = args.out.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("JSON: {}", args.out.display());
    if report.reinvite.failed + report.bye_invite.failed > 0 {
        bail!(
            "{} zaps failed",
            report.reinvite.failed + report.bye_invite.failed
        );
    }
    Ok(())
}
