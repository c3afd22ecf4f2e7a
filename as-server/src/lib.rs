//! IMS application server for IPTV.
pub mod api;
pub mod config;
pub mod driver;
pub mod error;
pub mod service;
pub mod sip;
pub mod store;
