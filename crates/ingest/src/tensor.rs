//! Opening a tensor in any supported container and reading byte ranges of its data.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::dtype::{Dtype, Element};
use crate::error::{bail, IngestError, Result};
use crate::names::{self, Pick};
use crate::npy;
use crate::pytorch;

/// The container a tensor was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Npy,
    Npz,
    Safetensors,
    Pytorch,
    Stdin,
    /// An array of the caller's memory ([`SharedArray`]).
    Memory,
}

impl Container {
    pub fn name(self) -> &'static str {
        match self {
            Container::Npy => "npy",
            Container::Npz => "npz",
            Container::Safetensors => "safetensors",
            Container::Pytorch => "pytorch",
            Container::Stdin => "npy (stdin)",
            Container::Memory => "in-memory array",
        }
    }
}

/// An opened tensor: its header facts and a way to read its data, never all at once
/// unless the container forces it (a deflated `.npz` member).
///
/// The data is addressed as if it were one array in storage order (C order, or Fortran order
/// when `fortran_order`), whatever its placement in the file: arrays stacked as layers and
/// strided views (a `torch.save`d slice) are read piece by piece behind that address space.
pub struct TensorFile {
    pub path: PathBuf,
    pub container: Container,
    /// The array's name inside an `.npz`/`.safetensors`/PyTorch dict, or the pattern whose
    /// matches were stacked.
    pub key: Option<String>,
    pub element: Element,
    pub shape: Vec<usize>,
    pub fortran_order: bool,
    /// Size of the file on disk (None for stdin).
    pub file_bytes: Option<u64>,
    /// How many arrays (a tuple's tensors, a pattern's matches) were stacked as the first axis.
    pub stacked: Option<usize>,
    storage: Storage,
    placement: Placement,
}

enum Storage {
    /// Positioned reads from a file.
    File(File),
    Memory(Vec<u8>),
    /// The caller's buffer (a numpy array's memory), read in place.
    Shared(Arc<dyn AsRef<[u8]> + Send + Sync>),
    /// A forward-only stream; reads must come in ascending offset order.
    Stream(Mutex<StreamState>),
}

struct StreamState {
    reader: Box<dyn Read + Send>,
    pos: u64,
}

/// Where the logical data lies in the storage.
enum Placement {
    /// One region in storage order, starting `base` bytes into the storage.
    Region { base: u64 },
    /// Logical elements `[i·n, (i+1)·n)` in C order are part `i`, an array of `part_shape`
    /// (n elements) with strides of its own.
    Parts {
        part_shape: Vec<usize>,
        part_len: u64,
        parts: Vec<Part>,
    },
}

struct Part {
    /// Byte offset of the part's first element in the storage.
    base: u64,
    /// Element strides of each axis of the part.
    strides: Vec<u64>,
    /// Elements in C order that are consecutive in the storage too (one positioned read).
    run: u64,
}

/// Runs of fewer consecutive elements than this are gathered from one read of their span.
const SHORT_RUN: u64 = 16;

/// A gather reads at most this many times the bytes it returns.
const SPARSE_SPAN: u64 = 16;

/// One array found in a container, before it becomes (a part of) a [`TensorFile`].
pub(crate) struct Piece {
    pub name: String,
    pub element: Element,
    pub shape: Vec<usize>,
    /// Element strides of each axis.
    pub strides: Vec<u64>,
    pub at: At,
}

/// Where a piece's first element is.
pub(crate) enum At {
    /// At this byte offset of the file.
    File(u64),
    /// Inflated into memory (a deflated `.npz` member), in the order its strides give.
    Memory(Vec<u8>),
}

/// What a container holds under the key asked for: one array, or several stacked as layers.
pub(crate) struct Found {
    pub pieces: Vec<Piece>,
    pub stacked: bool,
    pub key: Option<String>,
}

/// Element strides of an array stored in C or Fortran order.
pub(crate) fn contiguous_strides(shape: &[usize], fortran: bool) -> Vec<u64> {
    let mut strides = vec![0u64; shape.len()];
    let mut acc = 1u64;
    let axes: Vec<usize> = if fortran {
        (0..shape.len()).collect()
    } else {
        (0..shape.len()).rev().collect()
    };
    for a in axes {
        strides[a] = acc;
        acc = acc.saturating_mul(shape[a] as u64);
    }
    strides
}

/// Elements of `shape`, or None when the count overflows.
fn element_count(shape: &[usize]) -> Option<u64> {
    shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
}

/// Some(fortran) when `strides` are those of a C (false) or Fortran (true) order array.
/// Exact strides decide first (a Fortran `.npz` member of shape (1, n) stays Fortran); then
/// axes of length 1 may have any stride, as torch gives them.
fn storage_order(shape: &[usize], strides: &[u64]) -> Option<bool> {
    if element_count(shape) == Some(0) {
        return Some(false);
    }
    let fits = |fortran: bool, exact: bool| {
        contiguous_strides(shape, fortran)
            .iter()
            .zip(strides)
            .zip(shape)
            .all(|((want, got), &d)| (d == 1 && !exact) || want == got)
    };
    [(false, true), (true, true), (false, false), (true, false)]
        .into_iter()
        .find(|&(fortran, exact)| fits(fortran, exact))
        .map(|(fortran, _)| fortran)
}

/// Elements the strided array spans in its storage, from its first element (0 when empty).
pub(crate) fn extent(shape: &[usize], strides: &[u64]) -> Option<u64> {
    if shape.contains(&0) {
        return Some(0);
    }
    shape.iter().zip(strides).try_fold(1u64, |acc, (&d, &s)| {
        (d as u64 - 1).checked_mul(s)?.checked_add(acc)
    })
}

/// Elements in C order that stay consecutive in the storage: the trailing axes whose
/// strides are those of a C-order array.
fn contiguous_run(shape: &[usize], strides: &[u64]) -> u64 {
    let mut run = 1u64;
    for (&d, &s) in shape.iter().zip(strides).rev() {
        if d == 1 {
            continue;
        }
        if s != run {
            break;
        }
        run *= d as u64;
    }
    run
}

/// A C-order array in memory that a tensor reads in place, without a copy: the Python
/// binding hands a numpy array's buffer over this way (kept alive by the `Arc`).
#[derive(Clone)]
pub struct SharedArray {
    /// What error messages call it, e.g. `<attn array>`.
    pub name: PathBuf,
    pub element: Element,
    pub shape: Vec<usize>,
    /// The elements in C order, `shape`'s product × the element size in bytes.
    pub bytes: Arc<dyn AsRef<[u8]> + Send + Sync>,
}

/// A tensor to open: a file (any container [`TensorFile::open`] reads), or an array in the
/// caller's memory, read in place.
#[derive(Debug, Clone)]
pub enum TensorInput {
    File(PathBuf),
    Array(SharedArray),
}

impl TensorInput {
    /// What messages call it: the file's path, or the array's name.
    pub fn name(&self) -> &Path {
        match self {
            TensorInput::File(p) => p,
            TensorInput::Array(a) => &a.name,
        }
    }

    /// Opens the tensor (a file's only or `attentions` array).
    pub fn open(&self) -> Result<TensorFile> {
        match self {
            TensorInput::File(p) => TensorFile::open(p, None),
            TensorInput::Array(a) => TensorFile::from_shared(a),
        }
    }
}

impl Default for TensorInput {
    fn default() -> Self {
        TensorInput::File(PathBuf::new())
    }
}

impl From<PathBuf> for TensorInput {
    fn from(path: PathBuf) -> Self {
        TensorInput::File(path)
    }
}

impl From<&Path> for TensorInput {
    fn from(path: &Path) -> Self {
        TensorInput::File(path.to_path_buf())
    }
}

impl From<String> for TensorInput {
    fn from(path: String) -> Self {
        TensorInput::File(path.into())
    }
}

impl From<&str> for TensorInput {
    fn from(path: &str) -> Self {
        TensorInput::File(path.into())
    }
}

impl std::fmt::Debug for SharedArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedArray")
            .field("name", &self.name)
            .field("element", &self.element.name())
            .field("shape", &self.shape)
            .finish()
    }
}

impl TensorFile {
    /// The tensor of an in-memory array; fails when the buffer is not the size its shape
    /// and element type give.
    pub fn from_shared(array: &SharedArray) -> Result<TensorFile> {
        let len = array.bytes.as_ref().as_ref().len() as u64;
        let t = TensorFile {
            path: array.name.clone(),
            container: Container::Memory,
            key: None,
            element: array.element,
            shape: array.shape.clone(),
            fortran_order: false,
            file_bytes: None,
            stacked: None,
            storage: Storage::Shared(array.bytes.clone()),
            placement: Placement::Region { base: 0 },
        };
        if t.data_bytes()? != len {
            bail!(
                &t.path,
                "buffer of {len} bytes does not hold shape {:?} of {}",
                t.shape,
                t.element.name()
            );
        }
        Ok(t)
    }

    /// Opens `path` (`-` = an `.npy` stream on stdin). `key` names the array in an `.npz`,
    /// `.safetensors` or PyTorch dict, or is a pattern (`'arr_*'`) whose matches are stacked
    /// as layers; without it, `attentions` if present, else the only array.
    pub fn open(path: &Path, key: Option<&str>) -> Result<TensorFile> {
        if path.as_os_str() == "-" {
            return Self::open_stdin();
        }
        let (file, len) = open_regular(path)?;
        let container = container_of(path, &file, len)?;
        let found = match container {
            Container::Npz => Self::find_npz(path, &file, len, key)?,
            Container::Safetensors => Self::find_safetensors(path, &file, len, key)?,
            Container::Pytorch => pytorch::find(path, &file, len, key)?,
            _ => return Self::open_npy(path, file, len),
        };
        Self::assemble(path, container, file, len, found)
    }

    /// Opens the steps of one `generate()` call saved in one file, in order: a `torch.save`d
    /// tuple of steps, each a tuple of layers as `generate(output_attentions=True,
    /// return_dict_in_generate=True).attentions` holds them (or each one stacked tensor),
    /// alone or as a dict entry (`key`, default `attentions`); or the arrays of an `.npz` or
    /// `.safetensors` that the pattern `key` (default `*`, every array) matches, in natural
    /// order (`arr_2` before `arr_10`).
    ///
    /// An `.npy` or stdin is one array, so one step: a generation of its prompt alone.
    ///
    /// # Errors
    /// A key that names one array, and every error of [`open`](Self::open).
    pub fn open_steps(path: &Path, key: Option<&str>) -> Result<Vec<TensorFile>> {
        if path.as_os_str() == "-" {
            return Ok(vec![Self::open_stdin()?]);
        }
        let (file, len) = open_regular(path)?;
        let container = container_of(path, &file, len)?;
        let found = match container {
            Container::Pytorch => pytorch::find_steps(path, &file, len, key)?,
            Container::Npz | Container::Safetensors => {
                let pattern = key.unwrap_or("*");
                if !names::is_pattern(pattern) {
                    bail!(
                        path,
                        "--attn-key '{pattern}' names one array, which holds one step: give a pattern ('step_*') whose arrays are the steps"
                    );
                }
                let all = match container {
                    Container::Npz => Self::find_npz(path, &file, len, Some(pattern))?,
                    _ => Self::find_safetensors(path, &file, len, Some(pattern))?,
                };
                all.pieces
                    .into_iter()
                    .map(|piece| Found {
                        key: Some(piece.name.clone()),
                        pieces: vec![piece],
                        stacked: false,
                    })
                    .collect()
            }
            _ => return Ok(vec![Self::open_npy(path, file, len)?]),
        };
        found
            .into_iter()
            .map(|f| {
                let file = file.try_clone().map_err(|e| IngestError::io(path, e))?;
                Self::assemble(path, container, file, len, f)
            })
            .collect()
    }

    fn open_npy(path: &Path, file: File, len: u64) -> Result<TensorFile> {
        let header = read_npy_header(path, |off, buf| file.read_exact_at(buf, off), len)?;
        let t = TensorFile {
            path: path.to_path_buf(),
            container: Container::Npy,
            key: None,
            element: header.element,
            shape: header.shape,
            fortran_order: header.fortran_order,
            file_bytes: Some(len),
            stacked: None,
            storage: Storage::File(file),
            placement: Placement::Region {
                base: header.data_offset,
            },
        };
        t.check_fits(len.saturating_sub(header.data_offset))?;
        Ok(t)
    }

    fn open_stdin() -> Result<TensorFile> {
        let path = Path::new("<stdin>");
        let mut reader: Box<dyn Read + Send> = Box::new(std::io::stdin());
        let mut pre = vec![0u8; npy::PREAMBLE_LEN];
        read_full(&mut reader, &mut pre[..10]).map_err(|e| IngestError::io(path, e))?;
        if pre[6] >= 2 {
            read_full(&mut reader, &mut pre[10..]).map_err(|e| IngestError::io(path, e))?;
        } else {
            pre.truncate(10);
        }
        let total = npy::header_len(&pre).map_err(|r| IngestError::invalid(path, r))?;
        let mut head = pre;
        let have = head.len();
        head.resize(total, 0);
        read_full(&mut reader, &mut head[have..]).map_err(|e| IngestError::io(path, e))?;
        let header = npy::parse_header(&head).map_err(|r| IngestError::invalid(path, r))?;
        let t = TensorFile {
            path: path.to_path_buf(),
            container: Container::Stdin,
            key: None,
            element: header.element,
            shape: header.shape,
            fortran_order: header.fortran_order,
            file_bytes: None,
            stacked: None,
            storage: Storage::Stream(Mutex::new(StreamState { reader, pos: 0 })),
            placement: Placement::Region { base: 0 },
        };
        t.data_bytes()?;
        Ok(t)
    }

    fn find_npz(path: &Path, file: &File, len: u64, key: Option<&str>) -> Result<Found> {
        let reader = file.try_clone().map_err(|e| IngestError::io(path, e))?;
        let mut zip = zip::ZipArchive::new(reader).map_err(|e| bad_npz(path, e))?;
        let names: Vec<String> = zip
            .file_names()
            .filter_map(|n| n.ok())
            .map(|n| n.to_string())
            .collect();
        let arrays: Vec<&str> = names
            .iter()
            .map(|n| n.strip_suffix(".npy").unwrap_or(n))
            .collect();
        let member = |array: &str| {
            names[arrays
                .iter()
                .position(|a| *a == array)
                .expect("picked from the list")]
            .clone()
        };
        let zip = std::cell::RefCell::new(&mut zip);
        let pick = names::pick(path, key, &arrays, |a| {
            let mut zip = zip.borrow_mut();
            let name = member(a);
            let mut entry = zip.by_name(&name).ok()?;
            read_member_header(path, &mut entry, &name, file, len)
                .ok()
                .map(|(h, _)| h.shape)
        })?;
        let zip = zip.into_inner();
        let (names, stacked, key) = match pick {
            Pick::One(name) => (vec![name.clone()], false, name),
            Pick::Stack { pattern, names } => (names, true, pattern),
        };
        let pieces = names
            .into_iter()
            .map(|array| npz_piece(path, zip, file, len, &member(&array), array))
            .collect::<Result<_>>()?;
        Ok(Found {
            pieces,
            stacked,
            key: Some(key),
        })
    }

    fn find_safetensors(path: &Path, file: &File, len: u64, key: Option<&str>) -> Result<Found> {
        let mut n = [0u8; 8];
        if len < 8 {
            bail!(path, "truncated safetensors file ({len} bytes)");
        }
        file.read_exact_at(&mut n, 0)
            .map_err(|e| IngestError::io(path, e))?;
        let hlen = u64::from_le_bytes(n);
        if hlen > len - 8 || hlen > 100 << 20 {
            bail!(
                path,
                "safetensors header length {hlen} exceeds the file ({len} bytes)"
            );
        }
        let mut header = vec![0u8; hlen as usize];
        file.read_exact_at(&mut header, 8)
            .map_err(|e| IngestError::io(path, e))?;
        let meta: safetensors::tensor::Metadata = serde_json::from_slice(&header)
            .map_err(|e| IngestError::invalid(path, format!("bad safetensors header ({e})")))?;
        let tensors = meta.tensors();
        let mut names: Vec<&str> = tensors.keys().map(|s| s.as_str()).collect();
        names.sort_unstable();
        let pick = names::pick(path, key, &names, |n| Some(tensors[n].shape.clone()))?;
        let (picked, stacked, key) = match pick {
            Pick::One(name) => (vec![name.clone()], false, name),
            Pick::Stack { pattern, names } => (names, true, pattern),
        };
        let mut pieces = Vec::with_capacity(picked.len());
        for name in picked {
            let info = tensors[name.as_str()];
            use safetensors::Dtype as S;
            let dtype = match info.dtype {
                S::F16 => Dtype::F16,
                S::BF16 => Dtype::BF16,
                S::F32 => Dtype::F32,
                S::F64 => Dtype::F64,
                S::BOOL => Dtype::Bool,
                S::U8 | S::I8 | S::I16 | S::U16 | S::I32 | S::U32 | S::I64 | S::U64 => Dtype::Int {
                    bytes: info.dtype.size() as u8,
                    signed: matches!(info.dtype, S::I8 | S::I16 | S::I32 | S::I64),
                },
                other => bail!(path, "unsupported safetensors dtype {other:?} ('{name}')"),
            };
            let element = Element::little(dtype);
            let (start, end) = info.data_offsets;
            let Some(base) = (8 + hlen).checked_add(start as u64) else {
                bail!(path, "tensor '{name}' starts past any file ({start})");
            };
            let need = element_count(&info.shape)
                .and_then(|n| n.checked_mul(element.size() as u64))
                .ok_or_else(|| {
                    IngestError::invalid(
                        path,
                        format!("shape {:?} is too large to address", info.shape),
                    )
                })?;
            if end.checked_sub(start) != Some(need as usize) {
                bail!(
                    path,
                    "tensor data holds {} bytes, its shape needs {need}",
                    end.wrapping_sub(start)
                );
            }
            if need > len.saturating_sub(base) {
                bail!(
                    path,
                    "header claims shape {:?} of {} ({need} bytes) but the file holds {} bytes of data",
                    info.shape,
                    element.name(),
                    len.saturating_sub(base)
                );
            }
            pieces.push(Piece {
                element,
                strides: contiguous_strides(&info.shape, false),
                shape: info.shape.clone(),
                at: At::File(base),
                name,
            });
        }
        Ok(Found {
            pieces,
            stacked,
            key: Some(key),
        })
    }

    /// The tensor of the arrays found: one array as it lies, or several stacked as a new
    /// first (layer) axis. Pieces have been checked against their own bytes; here they are
    /// checked against each other and the file.
    fn assemble(
        path: &Path,
        container: Container,
        file: File,
        len: u64,
        found: Found,
    ) -> Result<TensorFile> {
        let Found {
            mut pieces,
            stacked,
            key,
        } = found;
        let mut t = TensorFile {
            path: path.to_path_buf(),
            container,
            key,
            element: pieces[0].element,
            shape: pieces[0].shape.clone(),
            fortran_order: false,
            file_bytes: Some(len),
            stacked: stacked.then_some(pieces.len()),
            storage: Storage::File(file),
            placement: Placement::Region { base: 0 },
        };
        if !stacked {
            if let Some(fortran) = storage_order(&pieces[0].shape, &pieces[0].strides) {
                let piece = pieces.pop().expect("one piece");
                t.fortran_order = fortran;
                match piece.at {
                    At::File(base) => t.placement = Placement::Region { base },
                    At::Memory(data) => t.storage = Storage::Memory(data),
                }
                return Ok(t);
            }
        }
        let first = &pieces[0];
        for p in &pieces[1..] {
            if p.shape != first.shape {
                bail!(
                    path,
                    "arrays to stack as layers differ in shape: '{}' is {:?}, '{}' is {:?}",
                    first.name,
                    first.shape,
                    p.name,
                    p.shape
                );
            }
            if p.element != first.element {
                bail!(
                    path,
                    "arrays to stack as layers differ in dtype: '{}' is {}, '{}' is {}",
                    first.name,
                    first.element.name(),
                    p.name,
                    p.element.name()
                );
            }
        }
        let part_shape = first.shape.clone();
        if stacked {
            t.shape.insert(0, pieces.len());
        }
        let need = t.data_bytes()?;
        let w = t.element.size() as u64;
        let in_memory = pieces.iter().any(|p| matches!(p.at, At::Memory(_)));
        if !in_memory && need > len {
            // Only a view that repeats its storage (expand, or one tensor listed twice) can
            // claim more than the file: reading it would multiply the file in memory.
            bail!(
                path,
                "the tensor's {need} bytes exceed the file's {len}: it repeats stored values (an expanded view, or one tensor saved twice); save a contiguous copy"
            );
        }
        let mut parts = Vec::with_capacity(pieces.len());
        let mut data = Vec::new();
        for p in pieces {
            let run = contiguous_run(&part_shape, &p.strides);
            let base = match p.at {
                At::File(base) if !in_memory => base,
                // Mixed with inflated members: the stored ones are copied next to them.
                At::File(base) => {
                    let span = extent(&part_shape, &p.strides).unwrap_or(0) * w;
                    let at = data.len();
                    data.resize(at + span as usize, 0);
                    t.read_storage_at(base, &mut data[at..])?;
                    at as u64
                }
                At::Memory(bytes) => {
                    let at = data.len();
                    data.extend_from_slice(&bytes);
                    at as u64
                }
            };
            parts.push(Part {
                base,
                strides: p.strides,
                run,
            });
        }
        if in_memory {
            t.storage = Storage::Memory(data);
        }
        t.placement = Placement::Parts {
            part_len: element_count(&part_shape).unwrap_or(0),
            part_shape,
            parts,
        };
        Ok(t)
    }

    /// Number of elements.
    pub fn len(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the shape needs, or an error if that overflows.
    pub fn data_bytes(&self) -> Result<u64> {
        self.shape
            .iter()
            .try_fold(self.element.size() as u64, |acc, &d| {
                acc.checked_mul(d as u64)
            })
            .ok_or_else(|| {
                IngestError::invalid(
                    &self.path,
                    format!("shape {:?} is too large to address", self.shape),
                )
            })
    }

    fn check_fits(&self, available: u64) -> Result<()> {
        let need = self.data_bytes()?;
        if need > available {
            bail!(
                &self.path,
                "header claims shape {:?} of {} ({need} bytes) but the file holds {available} bytes of data",
                self.shape,
                self.element.name()
            );
        }
        Ok(())
    }

    /// Element strides (in elements) of each axis, in the address space `read_at` uses:
    /// the storage order (Fortran or C) of one region, C order for stacked or strided data.
    pub fn strides(&self) -> Vec<u64> {
        contiguous_strides(&self.shape, self.fortran_order)
    }

    /// True when any byte range can be read at any time (not a forward-only stream).
    pub fn is_seekable(&self) -> bool {
        !matches!(self.storage, Storage::Stream(_))
    }

    pub fn is_in_memory(&self) -> bool {
        matches!(self.storage, Storage::Memory(_) | Storage::Shared(_))
    }

    /// Reads `buf.len()` bytes at byte `at` of the storage (file, memory or stream).
    fn read_storage_at(&self, at: u64, buf: &mut [u8]) -> Result<()> {
        match &self.storage {
            Storage::File(file) => file
                .read_exact_at(buf, at)
                .map_err(|e| IngestError::io(&self.path, e)),
            Storage::Memory(data) => self.copy_from_memory(data, at, buf),
            Storage::Shared(data) => self.copy_from_memory(data.as_ref().as_ref(), at, buf),
            Storage::Stream(state) => {
                let mut s = state.lock().expect("stream lock");
                if at < s.pos {
                    bail!(&self.path, "internal: stream read out of order");
                }
                let skip = at - s.pos;
                let skipped = std::io::copy(&mut (&mut s.reader).take(skip), &mut std::io::sink())
                    .map_err(|e| IngestError::io(&self.path, e))?;
                if skipped < skip {
                    bail!(
                        &self.path,
                        "stream ends before the data its header announces"
                    );
                }
                read_full(&mut s.reader, buf).map_err(|e| IngestError::io(&self.path, e))?;
                s.pos = at + buf.len() as u64;
                Ok(())
            }
        }
    }

    fn copy_from_memory(&self, data: &[u8], at: u64, buf: &mut [u8]) -> Result<()> {
        let src = usize::try_from(at)
            .ok()
            .and_then(|s| data.get(s..s.checked_add(buf.len())?));
        let Some(src) = src else {
            bail!(&self.path, "internal: read past the data in memory");
        };
        buf.copy_from_slice(src);
        Ok(())
    }

    /// Storage byte offset of logical element `v` of stacked or strided data, and how many
    /// elements from there on are consecutive in the storage.
    fn locate(&self, v: u64) -> Result<(u64, u64)> {
        let Placement::Parts {
            part_shape,
            part_len,
            parts,
        } = &self.placement
        else {
            unreachable!("locate is for parts")
        };
        let part = (*part_len > 0)
            .then(|| parts.get((v / part_len) as usize))
            .flatten();
        let Some(part) = part else {
            bail!(&self.path, "internal: element {v} is past the tensor");
        };
        let within = v % part_len;
        let mut rest = within;
        let mut element = 0u64;
        for (&d, &s) in part_shape.iter().zip(&part.strides).rev() {
            element += (rest % d as u64) * s;
            rest /= d as u64;
        }
        let w = self.element.size() as u64;
        Ok((part.base + element * w, part.run - within % part.run))
    }

    /// Reads `buf.len()` bytes starting `offset` bytes into the data.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if let Placement::Region { base } = self.placement {
            return self.read_storage_at(base + offset, buf);
        }
        let w = self.element.size();
        if !offset.is_multiple_of(w as u64) || !buf.len().is_multiple_of(w) {
            bail!(&self.path, "internal: read not on element boundaries");
        }
        let mut v = offset / w as u64;
        let mut done = 0;
        while done < buf.len() {
            let (at, run) = self.locate(v)?;
            let left = ((buf.len() - done) / w) as u64;
            let n = run.min(left);
            if n < SHORT_RUN {
                let in_part = left.min(self.part_len() - v % self.part_len());
                let bytes = in_part as usize * w;
                if self.gather(v, &mut buf[done..done + bytes])? {
                    done += bytes;
                    v += in_part;
                    continue;
                }
            }
            let bytes = n as usize * w;
            self.read_storage_at(at, &mut buf[done..done + bytes])?;
            done += bytes;
            v += n;
        }
        Ok(())
    }

    /// Elements of each stacked or strided part (`locate` has found `v` in one, so not 0).
    fn part_len(&self) -> u64 {
        match &self.placement {
            Placement::Parts { part_len, .. } => *part_len,
            Placement::Region { .. } => unreachable!("parts only"),
        }
    }

    /// Fills `buf` with the elements from `v` on (all in one part) when they mostly cover
    /// their storage span (a transposed view read a row block at a time): one read of the
    /// span, then a gather, instead of one read per element. False (nothing read) when they
    /// are too sparse; the span lies within the file, so the copy is bounded by it.
    fn gather(&self, v: u64, buf: &mut [u8]) -> Result<bool> {
        let w = self.element.size();
        let n = (buf.len() / w) as u64;
        let (mut lo, mut hi) = (u64::MAX, 0);
        for i in v..v + n {
            let at = self.locate(i)?.0;
            lo = lo.min(at);
            hi = hi.max(at);
        }
        let span = hi - lo + w as u64;
        if span > SPARSE_SPAN * buf.len() as u64 {
            return Ok(false);
        }
        let mut raw = vec![0u8; span as usize];
        self.read_storage_at(lo, &mut raw)?;
        for (i, out) in (v..v + n).zip(buf.chunks_exact_mut(w)) {
            let at = (self.locate(i)?.0 - lo) as usize;
            out.copy_from_slice(&raw[at..at + w]);
        }
        Ok(true)
    }

    /// Reads `out.len()` consecutive elements starting at element `first`, converted to f32
    /// (`scratch` holds the raw bytes).
    pub fn read_f32(&self, first: u64, out: &mut [f32], scratch: &mut Vec<u8>) -> Result<()> {
        let w = self.element.size();
        if self.element == Element::little(Dtype::F32) && cfg!(target_endian = "little") {
            // SAFETY: any 4 bytes are a valid f32, and `out` is as long in bytes as the read.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, out.len() * 4)
            };
            return self.read_at(first * 4, bytes);
        }
        scratch.resize(out.len() * w, 0);
        self.read_at(first * w as u64, scratch)?;
        self.element.floats_to_f32(scratch, out);
        Ok(())
    }

    /// The whole data of a little-endian f32 tensor stored as one region of a file, mapped
    /// once for reading in place (None otherwise: other dtypes, streams, memory, stacked
    /// parts). On kernels whose page cache holds large folios (Linux 6.16+ on ext4, XFS) a
    /// fault maps megabytes, so rows read from the map cost no copy where `read_f32` copies
    /// every byte; readers [`release`](MappedF32::release) what they are done with, which
    /// keeps resident memory bounded.
    pub fn map_f32(&self) -> Result<Option<MappedF32>> {
        if self.element != Element::little(Dtype::F32) || !cfg!(target_endian = "little") {
            return Ok(None);
        }
        if !matches!(self.placement, Placement::Region { .. }) {
            return Ok(None);
        }
        let len = self.shape.iter().product::<usize>() * 4;
        let Some(map) = self.map(0, len)? else {
            return Ok(None);
        };
        Ok((map.as_ptr() as usize)
            .is_multiple_of(4)
            .then_some(MappedF32 { map }))
    }

    /// Maps `len` bytes starting `offset` bytes into the data, when they are one region of a
    /// file (None for streams, in-memory data, and ranges that cross stacked arrays or the
    /// gaps of a strided view). The map is released when dropped, so a caller that maps one
    /// slab at a time keeps its resident memory to one slab.
    pub fn map(&self, offset: u64, len: usize) -> Result<Option<memmap2::Mmap>> {
        let Storage::File(file) = &self.storage else {
            return Ok(None);
        };
        let at = match self.placement {
            Placement::Region { base } => base + offset,
            Placement::Parts { .. } => {
                let w = self.element.size() as u64;
                if !offset.is_multiple_of(w) || !(len as u64).is_multiple_of(w) {
                    return Ok(None);
                }
                let (at, run) = self.locate(offset / w)?;
                if run < len as u64 / w {
                    return Ok(None);
                }
                at
            }
        };
        // SAFETY: the map is read-only and short-lived; a file truncated by another process
        // while mapped is the one hazard, as with every memory-mapped reader.
        let map = unsafe { memmap2::MmapOptions::new().offset(at).len(len).map(file) };
        map.map(Some).map_err(|e| IngestError::io(&self.path, e))
    }

    /// True when the data is in a file and every element lies at a multiple of `align`
    /// bytes, so that a map of it can be read as elements in place.
    pub fn file_aligned(&self, align: u64) -> bool {
        if !matches!(self.storage, Storage::File(_)) {
            return false;
        }
        match &self.placement {
            Placement::Region { base } => base % align == 0,
            Placement::Parts { parts, .. } => parts.iter().all(|p| p.base % align == 0),
        }
    }

    /// Reads the whole data into memory (used when the storage order is not slab order).
    pub fn load_into_memory(&mut self) -> Result<()> {
        if self.is_in_memory() && matches!(self.placement, Placement::Region { .. }) {
            return Ok(());
        }
        let need = self.data_bytes()?;
        let mut data = Vec::new();
        data.try_reserve_exact(need as usize).map_err(|_| {
            IngestError::invalid(&self.path, format!("cannot allocate {need} bytes"))
        })?;
        data.resize(need as usize, 0);
        self.read_at(0, &mut data)?;
        self.storage = Storage::Memory(data);
        self.placement = Placement::Region { base: 0 };
        Ok(())
    }

    fn logical_values<T>(&self, convert: impl Fn(&[u8]) -> T) -> Result<Vec<T>> {
        let need = self.data_bytes()?;
        if need > 1 << 31 {
            bail!(
                &self.path,
                "{need} bytes is too large for an auxiliary array"
            );
        }
        let mut raw = vec![0u8; need as usize];
        self.read_at(0, &mut raw)?;
        let w = self.element.size();
        let strides = self.strides();
        let n = self.len() as usize;
        let mut out = Vec::with_capacity(n);
        let mut idx = vec![0usize; self.shape.len()];
        for _ in 0..n {
            let off: u64 = idx.iter().zip(&strides).map(|(&i, &s)| i as u64 * s).sum();
            let at = off as usize * w;
            out.push(convert(&raw[at..at + w]));
            for a in (0..idx.len()).rev() {
                idx[a] += 1;
                if idx[a] < self.shape[a] {
                    break;
                }
                idx[a] = 0;
            }
        }
        Ok(out)
    }

    /// All values in C (row-major) order as f64 — for small auxiliary arrays.
    pub fn to_f64_vec(&self) -> Result<Vec<f64>> {
        let e = self.element;
        self.logical_values(|b| e.to_f64(b))
    }

    /// All values in C order as i64; float arrays are an error.
    pub fn to_i64_vec(&self) -> Result<Vec<i64>> {
        if self.element.is_float() {
            bail!(&self.path, "expected integers, got {}", self.element.name());
        }
        let e = self.element;
        self.logical_values(|b| e.to_i64(b))
    }
}

fn bad_npz(path: &Path, e: zip::result::ZipError) -> IngestError {
    IngestError::invalid(path, format!("not a valid .npz file ({e})"))
}

/// The `.npy` header at the start of a zip member, and where its data starts in the file when
/// the member is stored (None when deflated).
fn read_member_header(
    path: &Path,
    entry: &mut zip::read::ZipFile<'_, File>,
    member: &str,
    file: &File,
    len: u64,
) -> Result<(npy::NpyHeader, Option<u64>)> {
    let size = entry.size();
    if entry.compression() == zip::CompressionMethod::Stored {
        let start = entry
            .data_start()
            .ok_or_else(|| IngestError::invalid(path, "member has no data offset"))?;
        if start.checked_add(size).is_none_or(|end| end > len) {
            bail!(path, "member '{member}' extends past the end of the file");
        }
        let header = read_npy_header(path, |off, buf| file.read_exact_at(buf, start + off), size)?;
        return Ok((header, Some(start)));
    }
    let mut pre = vec![0u8; npy::PREAMBLE_LEN];
    read_full(entry, &mut pre).map_err(|e| IngestError::io(path, e))?;
    let total = npy::header_len(&pre).map_err(|r| IngestError::invalid(path, r))?;
    let mut head = pre;
    head.resize(total.max(npy::PREAMBLE_LEN), 0);
    read_full(entry, &mut head[npy::PREAMBLE_LEN..]).map_err(|e| IngestError::io(path, e))?;
    let header = npy::parse_header(&head).map_err(|r| IngestError::invalid(path, r))?;
    Ok((header, None))
}

/// Member `member` of an `.npz` as the piece named `array`: read in place when stored,
/// inflated when deflated (after checking that the size it claims is what its header needs).
fn npz_piece(
    path: &Path,
    zip: &mut zip::ZipArchive<File>,
    file: &File,
    len: u64,
    member: &str,
    array: String,
) -> Result<Piece> {
    let mut entry = zip.by_name(member).map_err(|e| bad_npz(path, e))?;
    let size = entry.size();
    let (header, start) = read_member_header(path, &mut entry, member, file, len)?;
    let need = element_count(&header.shape)
        .and_then(|n| n.checked_mul(header.element.size() as u64))
        .ok_or_else(|| {
            IngestError::invalid(
                path,
                format!("shape {:?} is too large to address", header.shape),
            )
        })?;
    let available = size.saturating_sub(header.data_offset);
    let at = match start {
        Some(start) => {
            if need > available {
                bail!(
                    path,
                    "header claims shape {:?} of {} ({need} bytes) but the file holds {available} bytes of data",
                    header.shape,
                    header.element.name()
                );
            }
            At::File(start + header.data_offset)
        }
        None => {
            if need > available {
                bail!(
                    path,
                    "member '{member}' holds {size} bytes, its header needs {}",
                    header.data_offset + need
                );
            }
            let mut data = vec![0u8; need as usize];
            read_full(&mut entry, &mut data).map_err(|e| IngestError::io(path, e))?;
            At::Memory(data)
        }
    };
    Ok(Piece {
        name: array,
        element: header.element,
        strides: contiguous_strides(&header.shape, header.fortran_order),
        shape: header.shape,
        at,
    })
}

/// What the first bytes of a file say it is.
/// Opens `path` for positioned reads: (the file, its length).
fn open_regular(path: &Path) -> Result<(File, u64)> {
    let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
    let meta = file.metadata().map_err(|e| IngestError::io(path, e))?;
    if meta.is_dir() {
        bail!(path, "is a directory, not a tensor file");
    }
    Ok((file, meta.len()))
}

/// The container of an opened file, by its extension; any other name (or none, as for an
/// in-memory file) is `.npy` unless the first bytes say it is a zip (torch.save or np.savez)
/// or a pickle.
fn container_of(path: &Path, file: &File, len: u64) -> Result<Container> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    Ok(match ext.as_str() {
        "npz" => Container::Npz,
        "safetensors" => Container::Safetensors,
        "pt" | "pth" | "bin" => Container::Pytorch,
        _ => match sniff(file, len) {
            Sniffed::Zip if pytorch::is_torch_zip(file) => Container::Pytorch,
            Sniffed::Zip => Container::Npz,
            Sniffed::Pickle => return Err(pytorch::not_zip(path, file, len)),
            Sniffed::Other => Container::Npy,
        },
    })
}

enum Sniffed {
    Zip,
    Pickle,
    Other,
}

fn sniff(file: &File, len: u64) -> Sniffed {
    let mut head = [0u8; 4];
    if len < 4 || file.read_exact_at(&mut head, 0).is_err() {
        return Sniffed::Other;
    }
    match head {
        [b'P', b'K', 3, 4] | [b'P', b'K', 5, 6] => Sniffed::Zip,
        [0x80, 2..=5, ..] => Sniffed::Pickle,
        _ => Sniffed::Other,
    }
}

fn read_npy_header(
    path: &Path,
    read_at: impl Fn(u64, &mut [u8]) -> std::io::Result<()>,
    available: u64,
) -> Result<npy::NpyHeader> {
    if available < 10 {
        bail!(path, "not an .npy file ({available} bytes)");
    }
    let mut pre = vec![0u8; (npy::PREAMBLE_LEN as u64).min(available) as usize];
    read_at(0, &mut pre).map_err(|e| IngestError::io(path, e))?;
    let total = npy::header_len(&pre).map_err(|r| IngestError::invalid(path, r))?;
    if total as u64 > available {
        bail!(path, "truncated .npy header");
    }
    let mut head = vec![0u8; total];
    read_at(0, &mut head).map_err(|e| IngestError::io(path, e))?;
    npy::parse_header(&head).map_err(|r| IngestError::invalid(path, r))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<()> {
    r.read_exact(buf)
}

/// A little-endian f32 tensor's data mapped from its file (see [`TensorFile::map_f32`]).
pub struct MappedF32 {
    map: memmap2::Mmap,
}

/// What [`MappedF32::release`] rounds to: the size of a huge page, so that releasing a range
/// never splits one that another reader is on.
const RELEASE_ALIGN: usize = 2 << 20;

/// The least [`MappedF32::release`] gives back before a range's end: each call interrupts the
/// other threads to flush their TLBs, so it waits for 16 MiB rather than 2.
const RELEASE_BATCH: usize = 16 << 20;

impl MappedF32 {
    /// The tensor's elements in C order.
    pub fn values(&self) -> &[f32] {
        // SAFETY: the map is 4-byte aligned (checked when made), any 4 bytes are a valid
        // f32, and the length is whole elements.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr() as *const f32, self.map.len() / 4) }
    }

    /// Gives the pages of elements `range` back to the page cache (the process's mapping of
    /// them is dropped; a later read faults them in again), rounded to 2 MiB: the start down,
    /// the end down too unless `to_end`, when it rounds up; nothing before 16 MiB have
    /// gathered, unless `to_end`. Resident memory then stays within 16 MiB of the ranges
    /// readers are on, not all that was read. Returns the element where the released pages
    /// end, the start of the next call for a reader going forward.
    pub fn release(&self, range: std::ops::Range<usize>, to_end: bool) -> usize {
        let base = self.map.as_ptr() as usize;
        let start = (base + range.start * 4) / RELEASE_ALIGN * RELEASE_ALIGN;
        let end = base + range.end * 4;
        let end = if to_end {
            end.div_ceil(RELEASE_ALIGN) * RELEASE_ALIGN
        } else {
            end / RELEASE_ALIGN * RELEASE_ALIGN
        };
        let (start, end) = (
            start.max(base) - base,
            end.min(base + self.map.len()) - base,
        );
        if !to_end && end < start + RELEASE_BATCH {
            return range.start;
        }
        if start < end {
            // SAFETY: the map is a read-only shared map of a file: dropping its pages loses
            // nothing (they are read back from the page cache), and readers holding slices of
            // them read the same bytes again. A failure only leaves the pages mapped.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    start,
                    end - start,
                )
            };
        }
        (end / 4).max(range.start)
    }
}
