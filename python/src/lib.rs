//! # attnframes-python — the CLI's commands as Python functions
//!
//! `_native.run(argv, capture)` runs one `attnframes` command through the CLI's own parser and
//! code paths, so options, defaults and error messages are the CLI's. With `capture`, the main
//! output's frames come back as an [`ArrowStream`] — an object with the Arrow PyCapsule
//! interface (`__arrow_c_stream__`) that `polars.DataFrame(...)` and `pyarrow.table(...)` take
//! without copying a buffer. Errors raise `ValueError` (bad options or input) or `OSError`
//! (a file that cannot be opened, read or written) carrying the CLI's one-line message.
//!
//! The Python package `attnframes` (beside this crate) wraps it: keyword arguments become
//! flags, numpy arrays become in-memory files.

use std::ffi::CStr;

use polars::prelude::DataFrame;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

/// The name the Arrow PyCapsule interface gives a stream capsule.
const STREAM_CAPSULE: &CStr = c"arrow_array_stream";

/// Captured frames, exported once as an Arrow C stream.
#[pyclass(module = "attnframes._native")]
struct ArrowStream {
    frames: Option<Vec<DataFrame>>,
}

/// The exported stream. It holds raw pointers, so it is not `Send` by itself; the capsule
/// only hands it to the consumer (pyarrow or polars), which moves it out under the GIL. What
/// is left is released when the capsule drops it.
struct StreamCapsule {
    _stream: polars_arrow::ffi::ArrowArrayStream,
}

// SAFETY: see `StreamCapsule`; the stream's private data is owned by the stream alone.
unsafe impl Send for StreamCapsule {}

#[pymethods]
impl ArrowStream {
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &mut self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        // The frame's own schema is the only one offered (the interface allows ignoring it).
        let _ = requested_schema;
        let frames = self
            .frames
            .take()
            .ok_or_else(|| PyValueError::new_err("this result was already read"))?;
        let stream =
            frame_sink::arrow_stream(frames).map_err(|e| PyValueError::new_err(e.to_string()))?;
        PyCapsule::new_with_value(py, StreamCapsule { _stream: stream }, STREAM_CAPSULE)
    }
}

/// Runs `argv` (program name first); returns the captured frames or None.
#[pyfunction]
fn run(py: Python<'_>, argv: Vec<String>, capture: bool) -> PyResult<Option<ArrowStream>> {
    let result = py.detach(|| attnframes::run_captured(argv, capture));
    match result {
        Ok(frames) => Ok(frames.map(|f| ArrowStream { frames: Some(f) })),
        Err(e) if e.io => Err(PyOSError::new_err(e.message)),
        Err(e) => Err(PyValueError::new_err(e.message)),
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_class::<ArrowStream>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
