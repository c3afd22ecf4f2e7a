//! Prometheus text exposition format (version 0.0.4) writing helpers: the `# HELP` /
//! `# TYPE` lines of a metric family, an unlabelled sample and label-value escaping. Used by
//! [`crate::control::RelayStats::to_prometheus`] and by the AS's `/metrics`.

use std::fmt::{Display, Write as _};

/// Writes the `# HELP` and `# TYPE` lines of metric family `name` (`kind`: counter, gauge).
pub fn write_family(out: &mut String, name: impl Display, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes the `# HELP` / `# TYPE` lines of `name` and its one unlabelled sample `v`.
pub fn write_metric(out: &mut String, name: impl Display, kind: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
    );
}

/// Escapes a label value (backslash, double quote, newline).
#[must_use]
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_family_sample_and_escapes() {
        let mut out = String::new();
        write_metric(&mut out, "x_total", "counter", "Xs.", 3);
        write_family(&mut out, format_args!("y_{}", "viewers"), "gauge", "Ys.");
        assert_eq!(
            out,
            "# HELP x_total Xs.\n# TYPE x_total counter\nx_total 3\n\
             # HELP y_viewers Ys.\n# TYPE y_viewers gauge\n"
        );
        assert_eq!(escape_label("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }
}
