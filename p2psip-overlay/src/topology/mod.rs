//! CHORD-RELOAD topology plugin (RFC 6940 section 9): ring arithmetic on
//! 128-bit ids ([`ring`]) and the routing table with neighbour lists and
//! fingers ([`chord`]). The protocol actions (Update, Join, Leave, finger
//! probes, reactive recovery) are driven by [`crate::node`], which owns one
//! [`chord::RoutingTable`].

pub mod chord;
pub mod ring;

pub use chord::{ChordConfig, RoutingTable};
pub use ring::{finger_start, hash_to_id, Id};
