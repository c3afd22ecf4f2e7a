//! The FT manager: places each viewer on a feedback target by GNP network coordinates, weighing
//! distance against load, and moves the viewers of a failed FT to the next best one.
//!
//! How it fits: the FTs (relays, pure `media-relay ft` processes) are the landmarks of GNP (Ng
//! & Zhang 2002, [`crate::feedback::gnp`]). [`FtManager::new`] takes their RTT matrix and fits
//! their coordinates (milliseconds of RTT, by minimising squared relative error); a viewer that
//! measured its RTT to the landmarks gets coordinates the same way
//! ([`crate::feedback::gnp::fit_host`]) and is placed ([`FtManager::place`]) on the live FT with
//! the smallest `predicted RTT x (1 + load_weight x load / capacity)`, never beyond capacity.
//! The manager keeps each viewer's coordinates, so when an FT fails ([`FtManager::fail`]) its
//! viewers are placed again among the survivors without measuring anything; the caller tells
//! them their new FT (in the AS: a re-INVITE or an RSI naming the new FT address, RFC 5760
//! section 7.1 SRBT 0/1). Sans-IO and deterministic: no clock, no sockets; the RNG of the
//! landmark fit is the caller's.

use std::collections::BTreeMap;

use rand::Rng;

use crate::feedback::gnp::{fit_host, fit_landmarks};

/// Why the manager refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FtManagerError {
    /// The RTT matrix is not square, has fewer than 2 FTs, or holds a non-positive or
    /// non-finite RTT off the diagonal.
    #[error("bad RTT matrix: {0}")]
    BadMatrix(&'static str),
    /// A viewer gave a number of RTTs other than the number of landmarks, or a bad RTT.
    #[error("expected {expected} positive RTTs to the landmarks, got {got}")]
    BadRtts {
        /// Landmarks.
        expected: usize,
        /// RTTs given.
        got: usize,
    },
    /// Every live FT is full (or none is alive).
    #[error("no feedback target has room")]
    NoCapacity,
    /// No such FT.
    #[error("unknown feedback target {0}")]
    UnknownFt(usize),
}

/// One FT as the manager sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct FtState {
    /// GNP coordinates, ms.
    pub coords: Vec<f64>,
    /// Viewers placed on it.
    pub load: usize,
    /// Whether it is alive.
    pub alive: bool,
}

/// A viewer moved off a failed FT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    /// The viewer.
    pub viewer: u64,
    /// The FT it was on.
    pub from: usize,
    /// Its new FT, or `None` if no survivor had room (the viewer is then unplaced).
    pub to: Option<usize>,
}

/// The FT manager: see the module docs. FTs are numbered as the rows of the RTT matrix.
#[derive(Debug, Clone)]
pub struct FtManager {
    fts: Vec<FtState>,
    capacity: usize,
    load_weight: f64,
    /// Viewer -> (its coordinates, its FT).
    viewers: BTreeMap<u64, (Vec<f64>, Option<usize>)>,
}

impl FtManager {
    /// Fit the FTs' coordinates in `dims` dimensions from their RTT matrix (`rtt[i][j]`, ms);
    /// each FT takes at most `capacity` viewers; `load_weight` weighs load against distance.
    pub fn new(
        rtt: &[Vec<f64>],
        dims: usize,
        capacity: usize,
        load_weight: f64,
        rng: &mut impl Rng,
    ) -> Result<FtManager, FtManagerError> {
        let n = rtt.len();
        if n < 2 {
            return Err(FtManagerError::BadMatrix("fewer than 2 FTs"));
        }
        if n > 64 {
            return Err(FtManagerError::BadMatrix("more than 64 landmarks"));
        }
        for (i, row) in rtt.iter().enumerate() {
            if row.len() != n {
                return Err(FtManagerError::BadMatrix("not square"));
            }
            for (j, &d) in row.iter().enumerate() {
                if i != j && !(d.is_finite() && d > 0.0) {
                    return Err(FtManagerError::BadMatrix("RTT not positive"));
                }
            }
        }
        // Symmetrise (measurements in both directions differ a little).
        let sym: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        if i == j {
                            0.0
                        } else {
                            (rtt[i][j] + rtt[j][i]) / 2.0
                        }
                    })
                    .collect()
            })
            .collect();
        let coords = fit_landmarks(&sym, dims.clamp(1, 8), rng);
        Ok(FtManager {
            fts: coords
                .into_iter()
                .map(|coords| FtState {
                    coords,
                    load: 0,
                    alive: true,
                })
                .collect(),
            capacity: capacity.max(1),
            load_weight: load_weight.max(0.0),
            viewers: BTreeMap::new(),
        })
    }

    /// The FTs.
    pub fn fts(&self) -> &[FtState] {
        &self.fts
    }

    /// The FT of `viewer`, if placed.
    pub fn ft_of(&self, viewer: u64) -> Option<usize> {
        self.viewers.get(&viewer).and_then(|v| v.1)
    }

    /// Coordinates of a viewer from its RTTs to the landmarks (every FT, in matrix order).
    pub fn coordinates(&self, rtt_to_landmarks: &[f64]) -> Result<Vec<f64>, FtManagerError> {
        if rtt_to_landmarks.len() != self.fts.len()
            || rtt_to_landmarks
                .iter()
                .any(|d| !(d.is_finite() && *d > 0.0))
        {
            return Err(FtManagerError::BadRtts {
                expected: self.fts.len(),
                got: rtt_to_landmarks.len(),
            });
        }
        let lm: Vec<Vec<f64>> = self.fts.iter().map(|f| f.coords.clone()).collect();
        Ok(fit_host(&lm, rtt_to_landmarks))
    }

    /// Predicted RTT between coordinates and FT `ft`, ms.
    pub fn predicted_rtt(&self, coords: &[f64], ft: usize) -> Option<f64> {
        self.fts.get(ft).map(|f| dist(coords, &f.coords))
    }

    fn best(&self, coords: &[f64]) -> Option<usize> {
        self.fts
            .iter()
            .enumerate()
            .filter(|(_, f)| f.alive && f.load < self.capacity)
            .map(|(i, f)| {
                let cost = dist(coords, &f.coords)
                    * (1.0 + self.load_weight * f.load as f64 / self.capacity as f64);
                (i, cost)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
    }

    /// Place `viewer` (its RTTs to the landmarks given); a viewer placed before is moved.
    pub fn place(
        &mut self,
        viewer: u64,
        rtt_to_landmarks: &[f64],
    ) -> Result<usize, FtManagerError> {
        let coords = self.coordinates(rtt_to_landmarks)?;
        self.place_at(viewer, coords)
    }

    /// Place `viewer` at known coordinates.
    pub fn place_at(&mut self, viewer: u64, coords: Vec<f64>) -> Result<usize, FtManagerError> {
        self.remove_viewer(viewer);
        let ft = self.best(&coords).ok_or(FtManagerError::NoCapacity)?;
        self.fts[ft].load += 1;
        self.viewers.insert(viewer, (coords, Some(ft)));
        Ok(ft)
    }

    /// The viewer left.
    pub fn remove_viewer(&mut self, viewer: u64) {
        if let Some((_, Some(ft))) = self.viewers.remove(&viewer) {
            self.fts[ft].load = self.fts[ft].load.saturating_sub(1);
        }
    }

    /// FT `ft` failed: it takes no viewers, and each of its viewers goes to the best survivor
    /// (in viewer order, so the result is deterministic).
    pub fn fail(&mut self, ft: usize) -> Result<Vec<Move>, FtManagerError> {
        let f = self.fts.get_mut(ft).ok_or(FtManagerError::UnknownFt(ft))?;
        f.alive = false;
        f.load = 0;
        let orphans: Vec<u64> = self
            .viewers
            .iter()
            .filter(|(_, (_, at))| *at == Some(ft))
            .map(|(&v, _)| v)
            .collect();
        let mut moves = Vec::with_capacity(orphans.len());
        for v in orphans {
            let to = match self.viewers.get(&v).map(|(c, _)| self.best(c)) {
                Some(Some(t)) => {
                    self.fts[t].load += 1;
                    Some(t)
                }
                _ => None,
            };
            if let Some(e) = self.viewers.get_mut(&v) {
                e.1 = to;
            }
            moves.push(Move {
                viewer: v,
                from: ft,
                to,
            });
        }
        Ok(moves)
    }

    /// FT `ft` is back: it takes new viewers again (nobody is moved back).
    pub fn recover(&mut self, ft: usize) -> Result<(), FtManagerError> {
        let f = self.fts.get_mut(ft).ok_or(FtManagerError::UnknownFt(ft))?;
        f.alive = true;
        Ok(())
    }
}

fn dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feedback::hasim::SimRng;

    /// Four FTs at the corners of a 100 ms square.
    fn square() -> (Vec<[f64; 2]>, Vec<Vec<f64>>) {
        let p = vec![[0.0, 0.0], [100.0, 0.0], [0.0, 100.0], [100.0, 100.0]];
        let rtt = p
            .iter()
            .map(|a| p.iter().map(|b| dist(a, b)).collect())
            .collect();
        (p, rtt)
    }

    fn rtts_from(p: &[[f64; 2]], at: [f64; 2]) -> Vec<f64> {
        p.iter().map(|l| dist(l, &at).max(1.0)).collect()
    }

    #[test]
    fn places_on_the_nearest_and_balances_load() {
        let (p, rtt) = square();
        let mut m = FtManager::new(&rtt, 2, 3, 0.0, &mut SimRng::new(1)).unwrap();
        // A viewer next to corner 3 goes there.
        let ft = m.place(1, &rtts_from(&p, [95.0, 90.0])).unwrap();
        assert_eq!(ft, 3);
        // Capacity 3: the fourth viewer near corner 3 goes elsewhere.
        for v in 2..=3 {
            assert_eq!(m.place(v, &rtts_from(&p, [92.0, 95.0])).unwrap(), 3);
        }
        let ft = m.place(4, &rtts_from(&p, [90.0, 97.0])).unwrap();
        assert_ne!(ft, 3);
        assert_eq!(m.fts()[3].load, 3);
        // Bad input is an error, not a panic.
        assert!(matches!(
            m.place(5, &[1.0, 2.0]),
            Err(FtManagerError::BadRtts { .. })
        ));
        assert!(FtManager::new(&[vec![0.0]], 2, 3, 0.0, &mut SimRng::new(1)).is_err());
    }

    #[test]
    fn load_weight_spreads_viewers() {
        let (p, rtt) = square();
        // Heavy load weight: a viewer in the middle of an edge, nearer corner 0 by a little,
        // goes to corner 1 once corner 0 is loaded.
        let mut m = FtManager::new(&rtt, 2, 10, 4.0, &mut SimRng::new(2)).unwrap();
        for v in 0..5 {
            assert_eq!(m.place(v, &rtts_from(&p, [3.0, 3.0])).unwrap(), 0);
        }
        assert_eq!(m.place(100, &rtts_from(&p, [45.0, 0.0])).unwrap(), 1);
    }

    #[test]
    fn failure_moves_viewers_to_the_next_best() {
        let (p, rtt) = square();
        let mut m = FtManager::new(&rtt, 2, 100, 0.1, &mut SimRng::new(3)).unwrap();
        // Viewers near corner 0, a little towards corner 1.
        for v in 0..10 {
            let ft = m.place(v, &rtts_from(&p, [20.0, 5.0 + v as f64])).unwrap();
            assert_eq!(ft, 0);
        }
        m.place(50, &rtts_from(&p, [99.0, 99.0])).unwrap();
        let moves = m.fail(0).unwrap();
        assert_eq!(moves.len(), 10);
        for mv in &moves {
            assert_eq!(mv.from, 0);
            // The next best for these is corner 1 (x 100) or 2 (y 100): nearer corner 1.
            assert_eq!(mv.to, Some(1), "{mv:?}");
            assert_eq!(m.ft_of(mv.viewer), Some(1));
        }
        assert_eq!(m.fts()[0].load, 0);
        assert_eq!(m.fts()[1].load, 10);
        assert_eq!(m.ft_of(50), Some(3), "viewers of other FTs stay");
        // A dead FT takes nobody; after recovery it does.
        assert_ne!(m.place(60, &rtts_from(&p, [1.0, 1.0])).unwrap(), 0);
        m.recover(0).unwrap();
        assert_eq!(m.place(61, &rtts_from(&p, [1.0, 1.0])).unwrap(), 0);
        assert_eq!(m.fail(9), Err(FtManagerError::UnknownFt(9)));
    }

    #[test]
    fn failure_with_no_room_leaves_viewers_unplaced() {
        let (p, rtt) = square();
        let mut m = FtManager::new(&rtt, 2, 1, 0.0, &mut SimRng::new(4)).unwrap();
        for (v, at) in [[0.0, 0.0], [100.0, 0.0], [0.0, 100.0], [100.0, 100.0]]
            .into_iter()
            .enumerate()
        {
            m.place(v as u64, &rtts_from(&p, at)).unwrap();
        }
        assert_eq!(
            m.place(9, &rtts_from(&p, [50.0, 50.0])),
            Err(FtManagerError::NoCapacity)
        );
        let moves = m.fail(2).unwrap();
        assert_eq!(
            moves,
            vec![Move {
                viewer: 2,
                from: 2,
                to: None
            }]
        );
        assert_eq!(m.ft_of(2), None);
    }
}
