//! The IPTV channel service: the SIP transaction user (TU) of the AS.
//!
//! The SIP endpoint (`driver::sip`) hands every request that needs the application to
//! [`Service`]; the service decides (pure rules in [`rules`], [`registrar`], [`channel_list`],
//! [`personal`], [`overload`]), talks to the channel store (sqlx) and to the media relay
//! (`media_relay::control::RelayHandle`), and answers. It sends NOTIFY and BYE itself through
//! the endpoint's client transactions.
//!
//! # Flows
//!
//! * **Join**: `INVITE sip:<channel>@<as-host>` with an SDP offer (RFC 3264). Unknown channel:
//!   `404`; body missing or malformed SDP: `400` with the reason; no common codec: `488` with a
//!   `Warning` (304/305, RFC 3261 section 20.43); too many sessions or relay overloaded: `503`
//!   with `Retry-After`. Otherwise the relay adds a viewer (its RTP/RTCP go to the offer's
//!   address), the answer is `sendonly` with the relay's address and ports, `a=rtcp` and
//!   `a=rtcp-unicast:rsi` naming the relay as feedback target (RFC 5760), the `200 OK` has
//!   `Contact: <sip:<channel>@<as-host:port>>`, and a session row is written. ACK confirms.
//! * **Zap** (channel change inside the dialog, see below).
//! * **Leave**: `BYE` → relay `remove_viewer` at once, session ended in the store, `200`.
//! * **Personal channel**: see [`personal`].
//! * **Channel list**: `SUBSCRIBE` with `Event: iptv-channels`, see [`channel_list`] for the
//!   event package.
//! * **REGISTER**: standalone registrar, see [`registrar`].
//! * **OPTIONS**: `200` with `Allow`, `Accept`, `Supported`.
//!
//! # Zap design: re-INVITE naming the new channel
//!
//! A channel change inside a session never allocates a new relay path. The AS's Contact in
//! the `200 OK` (and in every later 2xx of the dialog) is `sip:<current-channel>@<as-host:port>`,
//! so the UE's remote target always names the channel it watches. To zap, the UE sends a
//! re-INVITE **in the same dialog** (same Call-ID and tags, next CSeq) whose Request-URI user
//! part is the new channel, `sip:<new-channel>@<as-host:port>`; the SDP offer may be the same
//! as before (it is re-negotiated, which also lets the UE change its own ports):
//!
//! * Request-URI user = current channel (a plain re-INVITE to the Contact): session refresh,
//!   `200 OK` with the same answer.
//! * Request-URI user = another existing channel: the AS calls the relay's
//!   `switch_channel(viewer, new_channel)`: the same viewer path (same relay ports, same SSRC,
//!   sequence numbers and timestamps continuing) gets the new source, starting with a burst
//!   from the new channel's last key frame. The AS answers `200 OK` with the same SDP (the
//!   `o=` version is bumped only if the answer's content changed) and
//!   `Contact: <sip:<new-channel>@...>`, so the next zap or refresh is relative to it; the
//!   session row's channel is updated.
//! * Unknown channel: `404 Not Found`; the session stays on the old channel (RFC 3261
//!   section 14.2: a failed re-INVITE leaves the session unchanged).
//!
//! The plain way, BYE then a new INVITE to the other channel, keeps working (it allocates a new
//! viewer path). A relay-direct zap within an authorised package (ETSI TS 183 063 style) is
//! not offered by this version.

pub mod channel_list;
pub mod overload;
pub mod personal;
pub mod registrar;
pub mod rules;
