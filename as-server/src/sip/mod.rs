//! SIP stack: codec, transactions, dialogs, SDP. Sans-IO.
pub mod dialog;
pub mod error;
pub mod framing;
pub mod header;
mod lex;
pub mod message;
pub mod parse;
pub mod sdp;
pub mod transaction;
pub mod typed;
pub mod uri;
pub mod validate;

pub use error::{ErrorKind, ParseError};
pub use framing::{frame_len, Frame, StreamFramer};
pub use header::{HeaderName, Headers};
pub use lex::Params;
pub use message::{Message, Method, Request, Response, StatusCode};
pub use typed::{CSeq, NameAddr, Via};
pub use uri::{Host, Scheme, Uri};
pub use validate::{validate_request, Policy, Rejection};
