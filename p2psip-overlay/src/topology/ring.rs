//! Ring arithmetic on the 128-bit CHORD-RELOAD identifier space (RFC 6940 section 9).
//!
//! Node-IDs and Resource-IDs share one circular space of 2^128 points
//! (CHORD-RELOAD uses 128-bit ids, RFC 6940 section 9.2). Everything here is
//! modular arithmetic on `u128`: clockwise distance, interval tests and the
//! finger start points of section 9.3. The routing table ([`super::chord`])
//! and the storage layer use these helpers and nothing else to reason about
//! "who is responsible".

use std::fmt;

/// A point on the ring: a Node-ID or a Resource-ID (RFC 6940 section 9.2:
/// both are 128 bits in CHORD-RELOAD).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Id(pub u128);

impl Id {
    /// Number of bits in a CHORD-RELOAD id (`numBitsInNodeId`).
    pub const BITS: u32 = 128;

    /// Clockwise distance from `self` to `to` (0 when equal).
    #[must_use]
    pub fn distance_to(self, to: Id) -> u128 {
        to.0.wrapping_sub(self.0)
    }

    /// `self + delta` on the ring.
    #[must_use]
    pub fn plus(self, delta: u128) -> Id {
        Id(self.0.wrapping_add(delta))
    }

    /// True when `self` lies in the half-open arc `(from, to]` walking clockwise.
    /// `(a, a]` is the whole ring: a lone peer is responsible for everything.
    #[must_use]
    pub fn in_open_closed(self, from: Id, to: Id) -> bool {
        if from == to {
            return true;
        }
        let d = from.distance_to(self);
        d != 0 && d <= from.distance_to(to)
    }

    /// True when `self` lies strictly inside `(from, to)` walking clockwise.
    /// `(a, a)` is the whole ring except `a`.
    #[must_use]
    pub fn in_open(self, from: Id, to: Id) -> bool {
        if from == to {
            return self != from;
        }
        let d = from.distance_to(self);
        d != 0 && d < from.distance_to(to)
    }

    /// The id from the first 16 bytes of a digest (RFC 6940 section 9.2: the
    /// CHORD-RELOAD Resource-ID is the hash truncated to 128 bits).
    #[must_use]
    pub fn from_be_slice(bytes: &[u8]) -> Id {
        let mut b = [0u8; 16];
        let n = bytes.len().min(16);
        b[..n].copy_from_slice(&bytes[..n]);
        Id(u128::from_be_bytes(b))
    }

    /// Big-endian bytes, as the id goes on the wire.
    #[must_use]
    pub fn to_be_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({:08x}..)", (self.0 >> 96) as u32)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl From<u128> for Id {
    fn from(v: u128) -> Self {
        Id(v)
    }
}

/// Number of finger entries (one per bit of the id space).
pub const FINGERS: usize = Id::BITS as usize;

/// Start of finger `i` for peer `n`: RFC 6940 section 9.3 keeps finger
/// entries for the points `n + 2^(numBitsInNodeId - i)`, i = 1..=128, so
/// finger 1 is half-way round the ring and finger 128 is `n + 1`. Index `i`
/// here is that RFC number (1-based); the finger entry is the peer responsible
/// for this point, i.e. its successor.
///
/// # Panics
/// Never for `1 <= i <= 128`; other values are clamped into that range.
#[must_use]
pub fn finger_start(n: Id, i: usize) -> Id {
    let i = i.clamp(1, FINGERS) as u32;
    n.plus(1u128 << (Id::BITS - i))
}

/// Hash of a name into the ring with the overlay hash: SHA-1 truncated to 128
/// bits (RFC 6940 section 9.2, CHORD-RELOAD's hash function).
#[must_use]
pub fn hash_to_id(data: &[u8]) -> Id {
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data);
    Id::from_be_slice(d.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_wraps() {
        assert_eq!(Id(10).distance_to(Id(15)), 5);
        assert_eq!(Id(u128::MAX).distance_to(Id(1)), 2);
        assert_eq!(Id(7).distance_to(Id(7)), 0);
    }

    #[test]
    fn intervals() {
        assert!(Id(5).in_open_closed(Id(1), Id(5)));
        assert!(!Id(1).in_open_closed(Id(1), Id(5)));
        assert!(!Id(6).in_open_closed(Id(1), Id(5)));
        // wrapping arc (MAX-1, 3]
        assert!(Id(0).in_open_closed(Id(u128::MAX - 1), Id(3)));
        assert!(Id(u128::MAX).in_open_closed(Id(u128::MAX - 1), Id(3)));
        assert!(!Id(4).in_open_closed(Id(u128::MAX - 1), Id(3)));
        // lone peer owns everything
        assert!(Id(99).in_open_closed(Id(3), Id(3)));
        assert!(Id(3).in_open_closed(Id(3), Id(3)));
        assert!(Id(4).in_open(Id(3), Id(5)));
        assert!(!Id(5).in_open(Id(3), Id(5)));
        assert!(!Id(3).in_open(Id(3), Id(3)));
        assert!(Id(4).in_open(Id(3), Id(3)));
    }

    #[test]
    fn finger_points_follow_rfc_numbering() {
        let n = Id(0);
        assert_eq!(finger_start(n, 1), Id(1 << 127));
        assert_eq!(finger_start(n, 2), Id(1 << 126));
        assert_eq!(finger_start(n, 128), Id(1));
        // wraps
        assert_eq!(finger_start(Id(u128::MAX), 128), Id(0));
    }

    #[test]
    fn sha1_truncated() {
        // SHA-1("abc") = a9993e36 4706816a ba3e2571 7850c26c 9cd0d89d
        assert_eq!(hash_to_id(b"abc"), Id(0xa9993e364706816aba3e25717850c26c));
    }
}
