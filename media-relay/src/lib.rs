//! RTP media relay.
pub mod h264;
pub mod testpattern;
