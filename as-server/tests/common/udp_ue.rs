//! A SIP UE over a real UDP socket on 127.0.0.1, for tests that run the whole AS (`App`):
//! requests written with `\n` line ends and `{via}` / `{contact}` / `{from}` filled in,
//! responses matched by Call-ID and method, requests from the AS queued apart.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use as_server::sip::{Message, Request, Response, StatusCode};
use tokio::net::UdpSocket;
use tokio::time::timeout;

/// A UE: one UDP socket for SIP, requests from the AS queued apart from responses.
pub struct UdpUe {
    pub sock: UdpSocket,
    pub addr: SocketAddr,
    pub as_addr: SocketAddr,
    pub user: &'static str,
    pub requests: VecDeque<Request>,
    pub branch: u32,
}

impl UdpUe {
    pub async fn new(user: &'static str, as_addr: SocketAddr) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        Self {
            sock,
            addr,
            as_addr,
            user,
            requests: VecDeque::new(),
            branch: 0,
        }
    }

    /// Sends a request; `\n` become CRLF, `{via}` / `{contact}` / `{from}` are filled in.
    pub async fn send(&mut self, text: &str, body: &str) {
        self.branch += 1;
        let body = body.replace('\n', "\r\n");
        let text = text
            .replace(
                "{via}",
                &format!(
                    "Via: SIP/2.0/UDP {};branch=z9hG4bK{}x{}",
                    self.addr, self.user, self.branch
                ),
            )
            .replace(
                "{contact}",
                &format!("Contact: <sip:{}@{}>", self.user, self.addr),
            )
            .replace(
                "{from}",
                &format!("From: <sip:{}@127.0.0.1>;tag={}-tag", self.user, self.user),
            );
        let mut msg = text.trim_start().replace('\n', "\r\n");
        msg.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        self.sock
            .send_to(msg.as_bytes(), self.as_addr)
            .await
            .unwrap();
    }

    pub async fn recv(&mut self, wait: Duration) -> Option<Message> {
        let mut buf = vec![0u8; 65536];
        let (n, _) = timeout(wait, self.sock.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(Message::parse(&buf[..n]).expect("the AS sends valid SIP"))
    }

    /// The final response to `call_id` / CSeq `seq` `method` (requests from the AS queued).
    pub async fn response_to(&mut self, call_id: &str, seq: u32, method: &str) -> Response {
        self.final_response(call_id, Some(seq), method).await
    }

    /// The final response to `call_id` / `method`, whatever its CSeq number.
    pub async fn response(&mut self, call_id: &str, method: &str) -> Response {
        self.final_response(call_id, None, method).await
    }

    async fn final_response(&mut self, call_id: &str, seq: Option<u32>, method: &str) -> Response {
        let wait = async {
            loop {
                match self.recv(Duration::from_secs(5)).await? {
                    Message::Response(r) => {
                        let cseq = r.cseq().unwrap();
                        if r.call_id().unwrap() == call_id
                            && cseq.method.as_str() == method
                            && seq.is_none_or(|s| cseq.seq == s)
                            && r.status.is_final()
                        {
                            return Some(r);
                        }
                    }
                    Message::Request(q) => self.requests.push_back(q),
                }
            }
        };
        timeout(Duration::from_secs(5), wait)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no response to {method} {call_id}"))
    }

    /// The next request from the AS with `method` (not answered), within `wait`.
    pub async fn next_request(&mut self, method: &str, wait: Duration) -> Option<Request> {
        let get = async {
            loop {
                if let Some(i) = self
                    .requests
                    .iter()
                    .position(|r| r.method.as_str() == method)
                {
                    return self.requests.remove(i);
                }
                match self.recv(Duration::from_secs(10)).await? {
                    Message::Request(q) => self.requests.push_back(q),
                    Message::Response(_) => {}
                }
            }
        };
        timeout(wait, get).await.ok().flatten()
    }

    /// The next request from the AS with `method` (answered 200 OK), within `wait`.
    pub async fn request_within(&mut self, method: &str, wait: Duration) -> Option<Request> {
        let r = self.next_request(method, wait).await?;
        self.answer(&r).await;
        Some(r)
    }

    /// The next request from the AS with `method` (answered 200 OK); panics after 5 s.
    pub async fn request(&mut self, method: &str) -> Request {
        self.request_within(method, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("no {method} from the AS"))
    }

    /// Answers `req` 200 OK.
    pub async fn answer(&self, req: &Request) {
        let resp = Response::for_request(req, StatusCode::OK, "OK");
        self.sock
            .send_to(&resp.to_bytes(), self.as_addr)
            .await
            .unwrap();
    }

    /// Sends `bytes` to the AS as they are.
    pub async fn send_raw(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.as_addr).await.unwrap();
    }

    pub async fn ack(&mut self, target: &str, call_id: &str, cseq: u32, to_tag: &str) {
        self.send(
            &format!(
                "ACK {target} SIP/2.0\n{{via}}\nMax-Forwards: 70\n{{from}}\n\
                 To: <{target}>;tag={to_tag}\nCall-ID: {call_id}\nCSeq: {cseq} ACK\n"
            ),
            "",
        )
        .await;
    }
}
