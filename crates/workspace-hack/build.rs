//! Empty: its presence makes Cargo build the `[build-dependencies]` (host features).
fn main() {}
