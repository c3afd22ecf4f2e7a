//! The report through the public API: a synthetic run shaped like a real one (a ramp of
//! joins, zaps, a relay fault that gives some viewers a long gap) written to disk, then the
//! files read back. `UE_SIM_REPORT_DIR=DIR` keeps the files there to look at the page.

use ue_sim::report::{self, Summary, Thresholds};
use ue_sim::stats::{RunStats, TimelinePoint, ViewerStats};

/// Deterministic pseudo-random numbers (xorshift), so the test needs no RNG crate.
struct Rng(u64);
impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn realistic(ues: usize) -> RunStats {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut s = RunStats {
        scenario: "synthetic-lab".into(),
        ues,
        duration_s: 60.0,
        joins_ok: ues as u64,
        registrations_ok: ues as u64,
        zaps_ok: (ues * 3) as u64,
        zaps_failed: 2,
        ..RunStats::default()
    };
    // Joins: a few ms; first frame a bit later (burst from the key frame); zaps ~20-60 ms.
    for _ in 0..ues {
        let j = 2.0 + 8.0 * r.unit();
        s.join_ms.push(j);
        s.first_packet_ms.push(j + 1.0 + 2.0 * r.unit());
        s.first_frame_ms.push(j + 3.0 + 20.0 * r.unit());
    }
    for _ in 0..ues * 3 {
        s.zap_ms.push(15.0 + 45.0 * r.unit() * r.unit());
    }
    for ue in 0..ues {
        let hit = ue % 10 == 0; // the viewers on the relay that stopped
        s.viewers.push(ViewerStats {
            ue,
            packets: 5000 + (r.unit() * 500.0) as u64,
            lost: if hit { (r.unit() * 40.0) as u64 } else { 0 },
            jitter_ms: 0.2 + r.unit(),
            gap_ms_max: if hit {
                250.0 + 300.0 * r.unit()
            } else {
                35.0 + 10.0 * r.unit()
            },
            moves: u32::from(hit),
            move_gap_ms: None,
        });
    }
    let mut active = 0u64;
    for t in 1..=60u32 {
        let joins = if t <= 20 { ues as u64 / 20 } else { 0 };
        let leaves = if t > 50 { ues as u64 / 10 } else { 0 };
        active = active + joins - leaves.min(active + joins);
        s.timeline.push(TimelinePoint {
            t_s: f64::from(t),
            joins,
            zaps: if t > 10 { (ues * 3 / 50) as u64 } else { 0 },
            leaves,
            active,
            ..TimelinePoint::default()
        });
    }
    s.failures.insert("zap-timeout".into(), 2);
    s
}

#[test]
fn report_files_have_the_issue_figures_and_the_plots() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("UE_SIM_REPORT_DIR")
        .map_or_else(|| tmp.path().to_owned(), std::path::PathBuf::from);
    let stats = realistic(400);
    let thresholds = Thresholds {
        zap_ms_p99: Some(100.0),
        gap_ms_max: Some(500.0),
        ..Thresholds::default()
    };
    let summary = Summary::new(&stats, &thresholds);
    let w = report::write(&dir, &stats, &summary).unwrap();

    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&w.json).unwrap()).unwrap();
    for key in [
        "/joins/ok",
        "/joins/failed",
        "/zap_ms/p50",
        "/zap_ms/p99",
        "/first_frame_ms/p50",
        "/first_frame_ms/p99",
        "/gap_ms/max",
        "/ues",
        "/duration_s",
    ] {
        assert!(
            j.pointer(key).is_some_and(|v| !v.is_null()),
            "{key} missing"
        );
    }
    assert_eq!(j["joins"]["ok"], 400);
    assert_eq!(j["joins"]["failed"], 0);
    assert_eq!(j["ues"], 400);
    let p99 = ue_sim::stats::percentile(&stats.zap_ms, 99.0).unwrap();
    assert_eq!(j["zap_ms"]["p99"].as_f64(), Some(p99));
    let gap_max = stats
        .viewers
        .iter()
        .map(|v| v.gap_ms_max)
        .fold(0.0, f64::max);
    assert_eq!(j["gap_ms"]["max"].as_f64(), Some(gap_max));
    // The gap limit (500 ms) is crossed by some hit viewer: the run fails on that check only.
    let failed: Vec<&str> = summary
        .checks
        .iter()
        .filter(|c| !c.pass)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(failed, ["gap_ms.max"]);
    assert_eq!(j["pass"], false);

    let page = std::fs::read_to_string(&w.html).unwrap();
    assert_eq!(page.matches("<svg").count(), 12);
    assert!(page.contains("zap_ms CDF (n=1200)"));
    assert!(page.contains("gap_ms_max per viewer (400 viewers)"));
}

#[test]
fn ten_thousand_viewers_make_a_bounded_page() {
    let stats = realistic(10_000);
    let summary = Summary::new(&stats, &Thresholds::default());
    let page = report::html(&stats, &summary).unwrap();
    // Plots are downsampled (CDF and per-viewer curves: about 1000 points, histograms: 40
    // bins), so the page does not grow with the run.
    assert!(page.len() < 1_500_000, "page is {} bytes", page.len());
    assert!(page.contains("zap_ms CDF (n=30000)"));
    assert!(page.contains("gap_ms_max per viewer (10000 viewers)"));
    assert_eq!(summary.joins.ok, 10_000);
    assert_eq!(summary.viewers, 10_000);
}
