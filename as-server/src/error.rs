//! Errors of the channel service and the operator API, split by cause (the caller asked for
//! something wrong, the thing is not there / already there, a limit is hit, a dependency
//! failed). The SIP codec has its own `sip::error`; the HTTP API maps these to status codes
//! and the SIP side to responses.

/// A service-layer error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is invalid (bad channel id, bad kind, empty name...): HTTP 400.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No such channel/session: HTTP 404 / SIP 404.
    #[error("not found: {0}")]
    NotFound(String),
    /// The id is taken: HTTP 409.
    #[error("already exists: {0}")]
    Conflict(String),
    /// Too many sessions, or the relay is full: HTTP/SIP 503 with Retry-After.
    #[error("overloaded (retry after {retry_after} s)")]
    Overloaded {
        /// Seconds for `Retry-After`.
        retry_after: u32,
    },
    /// The media relay failed.
    #[error("relay: {0}")]
    Relay(#[from] media_relay::control::Error),
    /// The catalogue database failed.
    #[error("store: {0}")]
    Store(String),
}

impl Error {
    /// HTTP status code for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Invalid(_) => 400,
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::Overloaded { .. } => 503,
            Self::Relay(media_relay::control::Error::Overloaded(_)) => 503,
            Self::Relay(media_relay::control::Error::UnknownChannel(_)) => 404,
            Self::Relay(media_relay::control::Error::ChannelExists(_)) => 409,
            Self::Relay(_) | Self::Store(_) => 500,
        }
    }
}

/// Result of the service layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
