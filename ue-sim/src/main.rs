//! `ue-sim`: UE simulator (first version: a placeholder binary; the sans-IO UE lands with its issue).
fn main() {
    eprintln!("ue-sim: not built yet; see the ue-sim issue");
    std::process::exit(2);
}
