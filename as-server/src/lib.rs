//! IMS application server for IPTV.
pub mod config;
pub mod service;
pub mod sip;
pub mod store;
