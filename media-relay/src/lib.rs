//! RTP media relay.
