//! `ue-sim`: a UE simulator for load tests of the IPTV application server.
//!
//! Layout (filled in as the ue-sim issue lands):
//! - [`stats`]: what a run measured ([`stats::RunStats`]), serialised by the report.
pub mod stats;
