//! SIP stack: codec, transactions, dialogs, SDP. Sans-IO.
pub mod sdp;
