//! The bench INVITE, shared by `benches/sip_parse.rs` and `examples/codec_loop.rs` (kept out of
//! `benches/*.rs` so cargo does not take it for a bench target).

/// A SIPp-uac-like INVITE: Via with branch, From/To/Contact name-addrs, CSeq, Call-ID,
/// Max-Forwards, Subject, Content-Type, Content-Length and an SDP offer.
pub const INVITE: &str = "INVITE sip:channel-42@as.iptv.example.net:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5061;branch=z9hG4bK-4711-1-0;rport\r\n\
From: \"sipp viewer\" <sip:sipp@192.0.2.10:5061>;tag=4711SIPpTag001\r\n\
To: <sip:channel-42@as.iptv.example.net:5060>\r\n\
Call-ID: 1-4711@192.0.2.10\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:sipp@192.0.2.10:5061;transport=udp>\r\n\
Max-Forwards: 70\r\n\
Subject: Performance Test\r\n\
User-Agent: SIPp/3.6 viewer\r\n\
Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, NOTIFY\r\n\
Supported: timer, replaces\r\n\
Content-Type: application/sdp\r\n\
Content-Length:   416\r\n\
\r\n\
v=0\r\n\
o=user1 53655765 2353687637 IN IP4 192.0.2.10\r\n\
s=IPTV channel join\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0 8 96\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=recvonly\r\n\
m=video 6002 RTP/AVP 97\r\n\
a=rtpmap:97 H264/90000\r\n\
a=fmtp:97 profile-level-id=42e01f;packetization-mode=1\r\n\
a=rtcp:6003\r\n\
a=recvonly\r\n\
a=rtcp-unicast:rsi\r\n\
a=x-padding:0123456789abcdef0123456789abcdef01234567\r\n";
