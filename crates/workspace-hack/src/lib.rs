//! No code: this crate only asks for the union of the features the workspace's builds need
//! (see its `Cargo.toml`), so that the release binary, the tests and the wheel share one set of
//! compiled dependencies.
