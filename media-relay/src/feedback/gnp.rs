//! `media-relay gnp-sim`: placing viewers on feedback targets by Global Network Positioning
//! coordinates (Ng & Zhang, "Predicting Internet Network Distance with Coordinates-Based
//! Approaches", INFOCOM 2002), on a synthetic geography.
//!
//! How it fits: this is the FT manager's placement core. Some FTs are landmarks; they measure
//! RTTs among themselves, and their coordinates come from minimising the sum of squared
//! relative errors `((|xi - xj| - dij) / dij)^2` with a downhill simplex (Nelder–Mead, written
//! here). Every other host (viewers, the remaining FTs) measures its RTT to the landmarks only
//! and gets coordinates the same way with the landmarks fixed. Coordinates are in milliseconds
//! of RTT (the objective works on measured RTTs, so no separate scaling step is needed). The
//! manager then places each viewer on the FT with the smallest predicted RTT weighed by that
//! FT's load, never beyond its capacity.
//!
//! The geography: hosts in clusters on a plane (1 unit = 1 ms), RTT = distance + the two hosts'
//! access delays, times a multiplicative noise, and for a fraction of pairs a detour factor that
//! breaks the triangle inequality (as Internet routes do).
//!
//! Metrics: `median_rel_error` is `|predicted - true| / true` over every pair of a viewer and a
//! non-landmark FT (distances the viewer never measured, the ones placement relies on);
//! `near_optimal_fraction` the share of viewers whose FT is within 1.2x the RTT of their truly
//! nearest FT; `bandwidth_saving_vs_random` is `1 - cost(gnp) / cost(random)` where the cost is
//! the sum over viewers of stream bit rate x RTT to their FT (bit-milliseconds: RTT stands for
//! the network distance the stream and its feedback travel). The `manager_*` fields run the
//! live [`crate::feedback::manager::FtManager`] on the same network (every FT a landmark,
//! viewers placed by their RTTs to the FTs), then fail the most loaded FT: how many viewers
//! move, how many land within 1.2x of their nearest survivor (capacity bounds the rest), how many
//! found no room.

use rand::Rng;
use serde::Serialize;

use crate::feedback::hasim::SimRng;

/// Parameters of a run.
#[derive(Debug, Clone)]
pub struct GnpConfig {
    /// Seed of the geography and every draw.
    pub seed: u64,
    /// Viewers.
    pub viewers: usize,
    /// Clusters of hosts.
    pub clusters: usize,
    /// FTs per cluster (the first one of each cluster, plus `extra_landmarks`, are landmarks).
    pub fts_per_cluster: usize,
    /// Coordinate dimensions.
    pub dims: usize,
    /// Multiplicative RTT noise: uniform in `[1 - noise, 1 + noise]`.
    pub noise: f64,
    /// Fraction of host pairs with a detour (triangle-inequality violation).
    pub tiv_fraction: f64,
    /// FT capacity as a multiple of the fair share `viewers / fts`.
    pub capacity_factor: f64,
    /// Weight of load against distance: cost = predicted RTT x (1 + w x load / capacity).
    pub load_weight: f64,
    /// Stream bit rate for the bandwidth cost, kbit/s.
    pub stream_kbps: f64,
}

impl GnpConfig {
    /// The default geography for a seed.
    pub fn new(seed: u64) -> GnpConfig {
        GnpConfig {
            seed,
            viewers: 2000,
            clusters: 8,
            fts_per_cluster: 2,
            dims: 2,
            noise: 0.08,
            tiv_fraction: 0.05,
            capacity_factor: 2.0,
            load_weight: 0.2,
            stream_kbps: 1000.0,
        }
    }
}

/// The JSON `gnp-sim` prints.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GnpReport {
    /// Seed.
    pub seed: u64,
    /// Viewers placed.
    pub viewers: usize,
    /// FTs.
    pub feedback_targets: usize,
    /// Of which landmarks.
    pub landmarks: usize,
    /// Coordinate dimensions.
    pub dims: usize,
    /// Median relative error of predicted viewer–FT RTTs (non-landmark FTs).
    pub median_rel_error: f64,
    /// 90th percentile of that error.
    pub p90_rel_error: f64,
    /// Median relative error of the landmarks' own fit.
    pub landmark_fit_median_rel_error: f64,
    /// Median relative error of predicted viewer–viewer RTTs (sampled pairs).
    pub viewer_pairs_median_rel_error: f64,
    /// Viewers within 1.2x of their nearest FT, coordinate placement.
    pub near_optimal_fraction: f64,
    /// The same for random placement (same capacities).
    pub near_optimal_fraction_random: f64,
    /// Mean RTT to the chosen FT, coordinate placement, ms.
    pub mean_rtt_ms: f64,
    /// Mean RTT to the chosen FT, random placement, ms.
    pub mean_rtt_ms_random: f64,
    /// Mean RTT to the nearest FT (no capacity limit), ms.
    pub mean_rtt_ms_nearest: f64,
    /// `1 - sum(rate x RTT) gnp / sum(rate x RTT) random`.
    pub bandwidth_saving_vs_random: f64,
    /// Most viewers on one FT.
    pub max_ft_load: usize,
    /// Capacity of each FT.
    pub ft_capacity: usize,
    /// Viewers moved when the most loaded FT fails (FT manager failover).
    pub failover_moved: usize,
    /// Of those, the share re-placed within 1.2x of their nearest surviving FT.
    pub failover_near_optimal_fraction: f64,
    /// The live FT manager ([`crate::feedback::manager::FtManager`], every FT a landmark):
    /// viewers within 1.2x of their nearest FT.
    pub manager_near_optimal_fraction: f64,
    /// The manager's mean RTT to the chosen FT, ms.
    pub manager_mean_rtt_ms: f64,
    /// Viewers the manager moved when the most loaded FT failed.
    pub manager_failover_moved: usize,
    /// Of those, the share within 1.2x of their nearest surviving FT.
    pub manager_failover_near_optimal_fraction: f64,
    /// Of those, viewers left without an FT (no survivor had room).
    pub manager_failover_unplaced: usize,
    /// Mean RTT of the moved viewers to their new FT, ms.
    pub manager_failover_mean_rtt_ms: f64,
}

#[derive(Debug, Clone, Copy)]
struct Host {
    pos: [f64; 2],
    access_ms: f64,
}

/// The synthetic network: true RTTs are drawn once per measured pair.
#[derive(Debug)]
struct Geography {
    hosts: Vec<Host>,
    noise: f64,
    tiv_fraction: f64,
    seed: u64,
}

impl Geography {
    /// True RTT between hosts `a` and `b`: symmetric and deterministic for the seed.
    fn rtt(&self, a: usize, b: usize) -> f64 {
        let (i, j) = if a < b { (a, b) } else { (b, a) };
        let ha = self.hosts[i];
        let hb = self.hosts[j];
        let d = ((ha.pos[0] - hb.pos[0]).powi(2) + (ha.pos[1] - hb.pos[1]).powi(2)).sqrt();
        let mut r = SimRng::new(
            self.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((j as u64) << 32),
        );
        let mut rtt =
            (d + ha.access_ms + hb.access_ms) * r.gen_range(1.0 - self.noise..=1.0 + self.noise);
        if r.gen_bool(self.tiv_fraction) {
            rtt *= r.gen_range(1.3..2.0);
        }
        rtt.max(0.1)
    }
}

/// Downhill simplex (Nelder & Mead 1965) minimising `f` from `x0` with initial step `step`;
/// returns the best point and its value. Bounded by `max_iter` iterations.
pub fn nelder_mead(
    f: &mut impl FnMut(&[f64]) -> f64,
    x0: &[f64],
    step: f64,
    max_iter: usize,
    tol: f64,
) -> (Vec<f64>, f64) {
    let n = x0.len();
    let mut simplex: Vec<(Vec<f64>, f64)> = Vec::with_capacity(n + 1);
    simplex.push((x0.to_vec(), f(x0)));
    for i in 0..n {
        let mut x = x0.to_vec();
        x[i] += step;
        let v = f(&x);
        simplex.push((x, v));
    }
    for _ in 0..max_iter {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        let best = simplex[0].1;
        let worst = simplex[n].1;
        if (worst - best).abs() <= tol * (best.abs() + tol) {
            break;
        }
        let mut centroid = vec![0.0; n];
        for (x, _) in &simplex[..n] {
            for (c, xi) in centroid.iter_mut().zip(x) {
                *c += xi / n as f64;
            }
        }
        let along = |t: f64, s: &[f64]| -> Vec<f64> {
            centroid
                .iter()
                .zip(s)
                .map(|(c, w)| c + t * (w - c))
                .collect()
        };
        let xr = along(-1.0, &simplex[n].0);
        let fr = f(&xr);
        if fr < simplex[0].1 {
            let xe = along(-2.0, &simplex[n].0);
            let fe = f(&xe);
            simplex[n] = if fe < fr { (xe, fe) } else { (xr, fr) };
        } else if fr < simplex[n - 1].1 {
            simplex[n] = (xr, fr);
        } else {
            let (xc, fc) = if fr < simplex[n].1 {
                let xc = along(-0.5, &simplex[n].0);
                let fc = f(&xc);
                (xc, fc)
            } else {
                let xc = along(0.5, &simplex[n].0);
                let fc = f(&xc);
                (xc, fc)
            };
            if fc < simplex[n].1.min(fr) {
                simplex[n] = (xc, fc);
            } else {
                // Shrink towards the best point.
                let b = simplex[0].0.clone();
                for s in simplex.iter_mut().skip(1) {
                    let x: Vec<f64> = b
                        .iter()
                        .zip(&s.0)
                        .map(|(bi, xi)| bi + 0.5 * (xi - bi))
                        .collect();
                    let v = f(&x);
                    *s = (x, v);
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    simplex.swap_remove(0)
}

fn dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Landmark coordinates from their RTT matrix (`rtt[i][j]`, ms): the GNP fit, with a few
/// restarts from random points; returns one `dims`-vector per landmark.
pub fn fit_landmarks(rtt: &[Vec<f64>], dims: usize, rng: &mut impl Rng) -> Vec<Vec<f64>> {
    let l = rtt.len();
    let span = rtt.iter().flatten().copied().fold(1.0, f64::max);
    let mut objective = |x: &[f64]| {
        let mut e = 0.0;
        for i in 0..l {
            for j in i + 1..l {
                let d = rtt[i][j];
                let p = dist(&x[i * dims..(i + 1) * dims], &x[j * dims..(j + 1) * dims]);
                e += ((p - d) / d).powi(2);
            }
        }
        e
    };
    let mut best: Option<(Vec<f64>, f64)> = None;
    for _ in 0..4 {
        let x0: Vec<f64> = (0..l * dims).map(|_| rng.gen_range(0.0..span)).collect();
        let mut x = x0;
        let mut v = f64::INFINITY;
        // Restarting the simplex around the current best escapes its collapses.
        for _ in 0..6 {
            let (nx, nv) = nelder_mead(&mut objective, &x, span / 10.0, 4000, 1e-12);
            x = nx;
            if (v - nv).abs() < 1e-9 {
                v = nv;
                break;
            }
            v = nv;
        }
        if best.as_ref().is_none_or(|b| v < b.1) {
            best = Some((x, v));
        }
    }
    let x = best.map(|b| b.0).unwrap_or_default();
    x.chunks(dims).map(<[f64]>::to_vec).collect()
}

/// A host's coordinates from its RTTs to the landmarks (landmarks fixed).
pub fn fit_host(landmarks: &[Vec<f64>], rtt_to: &[f64]) -> Vec<f64> {
    let mut objective = |x: &[f64]| {
        landmarks
            .iter()
            .zip(rtt_to)
            .map(|(l, &d)| ((dist(x, l) - d) / d).powi(2))
            .sum::<f64>()
    };
    // Start next to the nearest landmark.
    let nearest = rtt_to
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i);
    let x0: Vec<f64> = landmarks[nearest]
        .iter()
        .map(|c| c + rtt_to[nearest] / 2.0)
        .collect();
    let (x, _) = nelder_mead(&mut objective, &x0, rtt_to[nearest].max(1.0), 400, 1e-10);
    let (x, _) = nelder_mead(&mut objective, &x, 1.0, 400, 1e-12);
    x
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Place `viewers` on FTs: each in turn takes the FT with the smallest
/// `cost(v, f) x (1 + load_weight x load / capacity)` among those not full.
fn place(
    order: &[usize],
    fts: usize,
    capacity: usize,
    load_weight: f64,
    cost: impl Fn(usize, usize) -> f64,
) -> Vec<usize> {
    let mut load = vec![0usize; fts];
    let mut chosen = vec![0usize; order.len()];
    place_into(
        order,
        &mut load,
        &[],
        capacity,
        load_weight,
        cost,
        &mut chosen,
    );
    chosen
}

/// Place `order` given current loads, never on a `dead` FT, writing `chosen[v]`.
fn place_into(
    order: &[usize],
    load: &mut [usize],
    dead: &[usize],
    capacity: usize,
    load_weight: f64,
    cost: impl Fn(usize, usize) -> f64,
    chosen: &mut [usize],
) {
    let fts = load.len();
    for &v in order {
        let f = (0..fts)
            .filter(|&f| load[f] < capacity && !dead.contains(&f))
            .min_by(|&a, &b| {
                let ca = cost(v, a) * (1.0 + load_weight * load[a] as f64 / capacity as f64);
                let cb = cost(v, b) * (1.0 + load_weight * load[b] as f64 / capacity as f64);
                ca.total_cmp(&cb)
            })
            .unwrap_or(0);
        load[f] += 1;
        chosen[v] = f;
    }
}

/// Run the simulation.
pub fn run(cfg: &GnpConfig) -> GnpReport {
    let mut rng = SimRng::new(cfg.seed);
    let clusters = cfg.clusters.max(1);
    let centres: Vec<[f64; 2]> = (0..clusters)
        .map(|_| [rng.gen_range(10.0..190.0), rng.gen_range(10.0..190.0)])
        .collect();
    let weights: Vec<f64> = (0..clusters).map(|_| rng.gen_range(0.5..1.5)).collect();
    let wsum: f64 = weights.iter().sum();
    let gauss = |rng: &mut SimRng, sd: f64| {
        // Box–Muller.
        let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
        let u2: f64 = rng.gen();
        sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    };
    let mut hosts = Vec::new();
    // FTs first: fts_per_cluster per cluster near its centre.
    let mut landmark_ids = Vec::new();
    let mut ft_ids = Vec::new();
    for (c, centre) in centres.iter().enumerate() {
        for k in 0..cfg.fts_per_cluster.max(1) {
            let pos = [
                centre[0] + gauss(&mut rng, 6.0),
                centre[1] + gauss(&mut rng, 6.0),
            ];
            hosts.push(Host {
                pos,
                access_ms: rng.gen_range(0.2..1.0),
            });
            let id = hosts.len() - 1;
            ft_ids.push(id);
            if k == 0 || (c % 2 == 0 && k == 1) {
                landmark_ids.push(id);
            }
        }
    }
    let mut viewer_ids = Vec::new();
    for _ in 0..cfg.viewers {
        let mut pick = rng.gen_range(0.0..wsum);
        let mut c = 0;
        while c + 1 < clusters && pick >= weights[c] {
            pick -= weights[c];
            c += 1;
        }
        let pos = [
            centres[c][0] + gauss(&mut rng, 12.0),
            centres[c][1] + gauss(&mut rng, 12.0),
        ];
        hosts.push(Host {
            pos,
            access_ms: rng.gen_range(1.0..6.0),
        });
        viewer_ids.push(hosts.len() - 1);
    }
    let geo = Geography {
        hosts,
        noise: cfg.noise,
        tiv_fraction: cfg.tiv_fraction,
        seed: cfg.seed,
    };

    // Landmarks measure each other and fit.
    let l = landmark_ids.len();
    let lm_rtt: Vec<Vec<f64>> = landmark_ids
        .iter()
        .map(|&a| {
            landmark_ids
                .iter()
                .map(|&b| if a == b { 0.0 } else { geo.rtt(a, b) })
                .collect()
        })
        .collect();
    let lm_coords = fit_landmarks(&lm_rtt, cfg.dims, &mut rng);
    let mut lm_err = Vec::new();
    for i in 0..l {
        for j in i + 1..l {
            lm_err.push((dist(&lm_coords[i], &lm_coords[j]) - lm_rtt[i][j]).abs() / lm_rtt[i][j]);
        }
    }

    // Every other host measures the landmarks only.
    let coords_of = |id: usize| -> Vec<f64> {
        if let Some(i) = landmark_ids.iter().position(|&x| x == id) {
            return lm_coords[i].clone();
        }
        let r: Vec<f64> = landmark_ids.iter().map(|&lid| geo.rtt(id, lid)).collect();
        fit_host(&lm_coords, &r)
    };
    let ft_coords: Vec<Vec<f64>> = ft_ids.iter().map(|&id| coords_of(id)).collect();
    let v_coords: Vec<Vec<f64>> = viewer_ids.iter().map(|&id| coords_of(id)).collect();

    let nv = viewer_ids.len();
    let nf = ft_ids.len();
    let true_rtt: Vec<Vec<f64>> = viewer_ids
        .iter()
        .map(|&v| ft_ids.iter().map(|&f| geo.rtt(v, f)).collect())
        .collect();
    let pred = |v: usize, f: usize| dist(&v_coords[v], &ft_coords[f]);

    let mut errs = Vec::new();
    for (v, row) in true_rtt.iter().enumerate() {
        for (f, &fid) in ft_ids.iter().enumerate() {
            if !landmark_ids.contains(&fid) {
                errs.push((pred(v, f) - row[f]).abs() / row[f]);
            }
        }
    }
    let mut pair_errs = Vec::new();
    for _ in 0..2000.min(nv * nv) {
        let a = rng.gen_range(0..nv);
        let b = rng.gen_range(0..nv);
        if a == b {
            continue;
        }
        let t = geo.rtt(viewer_ids[a], viewer_ids[b]);
        pair_errs.push((dist(&v_coords[a], &v_coords[b]) - t).abs() / t);
    }

    // Placement: coordinates vs random, same arrival order, same capacity.
    let capacity = ((cfg.capacity_factor * nv as f64 / nf as f64).ceil() as usize).max(1);
    let mut order: Vec<usize> = (0..nv).collect();
    for i in (1..nv).rev() {
        let j = rng.gen_range(0..=i);
        order.swap(i, j);
    }
    let gnp = place(&order, nf, capacity, cfg.load_weight, pred);
    let rand_cost: Vec<f64> = (0..nv * nf).map(|_| rng.gen()).collect();
    let random = place(&order, nf, capacity, 0.0, |v, f| rand_cost[v * nf + f]);

    let nearest: Vec<f64> = true_rtt
        .iter()
        .map(|r| r.iter().copied().fold(f64::INFINITY, f64::min))
        .collect();
    let near = |chosen: &[usize]| {
        (0..nv)
            .filter(|&v| true_rtt[v][chosen[v]] <= 1.2 * nearest[v])
            .count() as f64
            / nv.max(1) as f64
    };
    let mean_rtt =
        |chosen: &[usize]| (0..nv).map(|v| true_rtt[v][chosen[v]]).sum::<f64>() / nv.max(1) as f64;
    let cost = |chosen: &[usize]| {
        (0..nv)
            .map(|v| cfg.stream_kbps * true_rtt[v][chosen[v]])
            .sum::<f64>()
    };
    let mut load = vec![0usize; nf];
    for &f in &gnp {
        load[f] += 1;
    }
    let max_ft_load = load.iter().copied().max().unwrap_or(0);

    // Failover: the most loaded FT dies; its viewers are placed again among the survivors.
    let dead = load
        .iter()
        .enumerate()
        .max_by_key(|(_, l)| **l)
        .map_or(0, |(f, _)| f);
    let moved: Vec<usize> = order.iter().copied().filter(|&v| gnp[v] == dead).collect();
    let mut after = gnp.clone();
    load[dead] = 0;
    place_into(
        &moved,
        &mut load,
        &[dead],
        capacity,
        cfg.load_weight,
        pred,
        &mut after,
    );
    let moved_near = moved
        .iter()
        .filter(|&&v| {
            let best = (0..nf)
                .filter(|&f| f != dead)
                .map(|f| true_rtt[v][f])
                .fold(f64::INFINITY, f64::min);
            after[v] != dead && true_rtt[v][after[v]] <= 1.2 * best
        })
        .count();
    // The live FT manager on the same network: every FT a landmark, each viewer placed by
    // its RTTs to the FTs (the same arrival order and capacity), then the most loaded fails.
    let ft_rtt: Vec<Vec<f64>> = ft_ids
        .iter()
        .map(|&a| {
            ft_ids
                .iter()
                .map(|&b| if a == b { 0.0 } else { geo.rtt(a, b) })
                .collect()
        })
        .collect();
    let mut m = crate::feedback::manager::FtManager::new(
        &ft_rtt,
        cfg.dims,
        capacity,
        cfg.load_weight,
        &mut rng,
    )
    .ok();
    let mut m_chosen = vec![usize::MAX; nv];
    if let Some(m) = m.as_mut() {
        for &v in &order {
            if let Ok(f) = m.place(v as u64, &true_rtt[v]) {
                m_chosen[v] = f;
            }
        }
    }
    let placed: Vec<usize> = (0..nv).filter(|&v| m_chosen[v] != usize::MAX).collect();
    let m_near = placed
        .iter()
        .filter(|&&v| true_rtt[v][m_chosen[v]] <= 1.2 * nearest[v])
        .count() as f64
        / nv.max(1) as f64;
    let m_mean = placed
        .iter()
        .map(|&v| true_rtt[v][m_chosen[v]])
        .sum::<f64>()
        / placed.len().max(1) as f64;
    let (mut m_moved, mut m_moved_near, mut m_unplaced, mut m_rtt) = (0usize, 0usize, 0usize, 0.0);
    if let Some(m) = m.as_mut() {
        let busiest = (0..nf).max_by_key(|&f| m.fts()[f].load).unwrap_or(0);
        let moves = m.fail(busiest).unwrap_or_default();
        m_moved = moves.len();
        for mv in &moves {
            let v = mv.viewer as usize;
            let best = (0..nf)
                .filter(|&f| f != busiest)
                .map(|f| true_rtt[v][f])
                .fold(f64::INFINITY, f64::min);
            match mv.to {
                Some(t) => {
                    m_rtt += true_rtt[v][t];
                    m_moved_near += usize::from(true_rtt[v][t] <= 1.2 * best);
                }
                None => m_unplaced += 1,
            }
        }
    }
    let r4 = |x: f64| (x * 10_000.0).round() / 10_000.0;
    GnpReport {
        seed: cfg.seed,
        viewers: nv,
        feedback_targets: nf,
        landmarks: l,
        dims: cfg.dims,
        median_rel_error: r4(median(&mut errs)),
        p90_rel_error: r4(percentile(&mut errs, 0.9)),
        landmark_fit_median_rel_error: r4(median(&mut lm_err)),
        viewer_pairs_median_rel_error: r4(median(&mut pair_errs)),
        near_optimal_fraction: r4(near(&gnp)),
        near_optimal_fraction_random: r4(near(&random)),
        mean_rtt_ms: r4(mean_rtt(&gnp)),
        mean_rtt_ms_random: r4(mean_rtt(&random)),
        mean_rtt_ms_nearest: r4(nearest.iter().sum::<f64>() / nv.max(1) as f64),
        bandwidth_saving_vs_random: r4(1.0 - cost(&gnp) / cost(&random)),
        max_ft_load,
        ft_capacity: capacity,
        failover_moved: moved.len(),
        failover_near_optimal_fraction: r4(moved_near as f64 / moved.len().max(1) as f64),
        manager_near_optimal_fraction: r4(m_near),
        manager_mean_rtt_ms: r4(m_mean),
        manager_failover_moved: m_moved,
        manager_failover_near_optimal_fraction: r4(m_moved_near as f64 / m_moved.max(1) as f64),
        manager_failover_unplaced: m_unplaced,
        manager_failover_mean_rtt_ms: r4(m_rtt / (m_moved - m_unplaced).max(1) as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simplex_finds_a_quadratic_minimum() {
        let mut f = |x: &[f64]| (x[0] - 3.0).powi(2) + 2.0 * (x[1] + 1.0).powi(2) + 5.0;
        let (x, v) = nelder_mead(&mut f, &[0.0, 0.0], 1.0, 2000, 1e-14);
        assert!(
            (x[0] - 3.0).abs() < 1e-4 && (x[1] + 1.0).abs() < 1e-4,
            "{x:?}"
        );
        assert!((v - 5.0).abs() < 1e-8);
    }

    #[test]
    fn exact_distances_fit_exactly() {
        // Four points of a 30 x 40 rectangle: the fit reproduces every distance.
        let p = [[0.0, 0.0], [30.0, 0.0], [0.0, 40.0], [30.0, 40.0]];
        let rtt: Vec<Vec<f64>> = p
            .iter()
            .map(|a| p.iter().map(|b| dist(a, b)).collect())
            .collect();
        let mut rng = SimRng::new(7);
        let c = fit_landmarks(&rtt, 2, &mut rng);
        for i in 0..4 {
            for j in i + 1..4 {
                let e = (dist(&c[i], &c[j]) - rtt[i][j]).abs() / rtt[i][j];
                assert!(e < 1e-3, "{i}-{j}: {e}");
            }
        }
        // The centre is 25 from every corner.
        let host = fit_host(&c, &[25.0; 4]);
        for l in &c {
            assert!((dist(&host, l) - 25.0).abs() < 0.05, "{host:?}");
        }
    }
}
