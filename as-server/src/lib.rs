//! IMS application server for IPTV.
pub mod sip;
