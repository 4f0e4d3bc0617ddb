//! Opening a tensor in any supported container and reading byte ranges of its data.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::dtype::{Dtype, Element};
use crate::error::{bail, IngestError, Result};
use crate::npy;

/// The container a tensor was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Npy,
    Npz,
    Safetensors,
    Stdin,
}

impl Container {
    pub fn name(self) -> &'static str {
        match self {
            Container::Npy => "npy",
            Container::Npz => "npz",
            Container::Safetensors => "safetensors",
            Container::Stdin => "npy (stdin)",
        }
    }
}

/// An opened tensor: its header facts and a way to read its data, never all at once
/// unless the container forces it (a deflated `.npz` member).
pub struct TensorFile {
    pub path: PathBuf,
    pub container: Container,
    /// The array's name inside an `.npz`/`.safetensors`.
    pub key: Option<String>,
    pub element: Element,
    pub shape: Vec<usize>,
    pub fortran_order: bool,
    /// Size of the file on disk (None for stdin).
    pub file_bytes: Option<u64>,
    storage: Storage,
}

enum Storage {
    /// Positioned reads from a file; `base` is where the first element starts.
    File {
        file: File,
        base: u64,
    },
    Memory(Vec<u8>),
    /// A forward-only stream; reads must come in ascending offset order.
    Stream(Mutex<StreamState>),
}

struct StreamState {
    reader: Box<dyn Read + Send>,
    pos: u64,
}

impl TensorFile {
    /// Opens `path` (`-` = an `.npy` stream on stdin). `key` names the array in an
    /// `.npz` or `.safetensors`; without it, `attentions` if present, else the only array.
    pub fn open(path: &Path, key: Option<&str>) -> Result<TensorFile> {
        if path.as_os_str() == "-" {
            return Self::open_stdin();
        }
        let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
        let meta = file.metadata().map_err(|e| IngestError::io(path, e))?;
        if meta.is_dir() {
            bail!(path, "is a directory, not a tensor file");
        }
        let len = meta.len();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "npz" => Self::open_npz(path, file, len, key),
            "safetensors" => Self::open_safetensors(path, file, len, key),
            _ => Self::open_npy(path, file, len),
        }
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
            storage: Storage::File {
                file,
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
            storage: Storage::Stream(Mutex::new(StreamState { reader, pos: 0 })),
        };
        t.data_bytes()?;
        Ok(t)
    }

    fn open_npz(path: &Path, file: File, len: u64, key: Option<&str>) -> Result<TensorFile> {
        let bad = |e: zip::result::ZipError| {
            IngestError::invalid(path, format!("not a valid .npz file ({e})"))
        };
        let reader = file.try_clone().map_err(|e| IngestError::io(path, e))?;
        let mut zip = zip::ZipArchive::new(reader).map_err(bad)?;
        let names: Vec<String> = zip
            .file_names()
            .filter_map(|n| n.ok())
            .map(|n| n.to_string())
            .collect();
        let arrays: Vec<&str> = names
            .iter()
            .map(|n| n.strip_suffix(".npy").unwrap_or(n))
            .collect();
        let key = pick_key(path, key, &arrays)?;
        let member = names[arrays
            .iter()
            .position(|a| *a == key)
            .expect("picked from the list")]
        .clone();
        let mut entry = zip.by_name(&member).map_err(bad)?;
        let stored = entry.compression() == zip::CompressionMethod::Stored;
        let size = entry.size();
        if stored {
            let start = entry
                .data_start()
                .ok_or_else(|| IngestError::invalid(path, "member has no data offset"))?;
            if start.checked_add(size).is_none_or(|end| end > len) {
                bail!(path, "member '{member}' extends past the end of the file");
            }
            let header =
                read_npy_header(path, |off, buf| file.read_exact_at(buf, start + off), size)?;
            let t = TensorFile {
                path: path.to_path_buf(),
                container: Container::Npz,
                key: Some(key),
                element: header.element,
                shape: header.shape,
                fortran_order: header.fortran_order,
                file_bytes: Some(len),
                storage: Storage::File {
                    file,
                    base: start + header.data_offset,
                },
            };
            t.check_fits(size.saturating_sub(header.data_offset))?;
            return Ok(t);
        }
        // A deflated member cannot be read at an offset: inflate it, after checking that the
        // size it claims is what its own header needs.
        let mut pre = vec![0u8; npy::PREAMBLE_LEN];
        read_full(&mut entry, &mut pre).map_err(|e| IngestError::io(path, e))?;
        let total = npy::header_len(&pre).map_err(|r| IngestError::invalid(path, r))?;
        let mut head = pre;
        head.resize(total.max(npy::PREAMBLE_LEN), 0);
        read_full(&mut entry, &mut head[npy::PREAMBLE_LEN..])
            .map_err(|e| IngestError::io(path, e))?;
        let header = npy::parse_header(&head).map_err(|r| IngestError::invalid(path, r))?;
        let mut t = TensorFile {
            path: path.to_path_buf(),
            container: Container::Npz,
            key: Some(key),
            element: header.element,
            shape: header.shape,
            fortran_order: header.fortran_order,
            file_bytes: Some(len),
            storage: Storage::Memory(Vec::new()),
        };
        let need = t.data_bytes()?;
        if size < header.data_offset + need {
            bail!(
                path,
                "member '{member}' holds {size} bytes, its header needs {}",
                header.data_offset + need
            );
        }
        let mut data = vec![0u8; need as usize];
        read_full(&mut entry, &mut data).map_err(|e| IngestError::io(path, e))?;
        t.storage = Storage::Memory(data);
        Ok(t)
    }

    fn open_safetensors(
        path: &Path,
        file: File,
        len: u64,
        key: Option<&str>,
    ) -> Result<TensorFile> {
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
        let key = pick_key(path, key, &names)?;
        let info = tensors[key.as_str()];
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
            other => bail!(path, "unsupported safetensors dtype {other:?}"),
        };
        let (start, end) = info.data_offsets;
        let base = 8 + hlen + start as u64;
        let t = TensorFile {
            path: path.to_path_buf(),
            container: Container::Safetensors,
            key: Some(key),
            element: Element::little(dtype),
            shape: info.shape.clone(),
            fortran_order: false,
            file_bytes: Some(len),
            storage: Storage::File { file, base },
        };
        let need = t.data_bytes()?;
        if (end - start) as u64 != need {
            bail!(
                path,
                "tensor data holds {} bytes, its shape needs {need}",
                end - start
            );
        }
        t.check_fits(len.saturating_sub(base))?;
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

    /// Element strides (in elements) of each axis, from the storage order.
    pub fn strides(&self) -> Vec<u64> {
        let mut strides = vec![0u64; self.shape.len()];
        let mut acc = 1u64;
        let axes: Vec<usize> = if self.fortran_order {
            (0..self.shape.len()).collect()
        } else {
            (0..self.shape.len()).rev().collect()
        };
        for a in axes {
            strides[a] = acc;
            acc *= self.shape[a] as u64;
        }
        strides
    }

    /// True when any byte range can be read at any time (not a forward-only stream).
    pub fn is_seekable(&self) -> bool {
        !matches!(self.storage, Storage::Stream(_))
    }

    pub fn is_in_memory(&self) -> bool {
        matches!(self.storage, Storage::Memory(_))
    }

    /// Reads `buf.len()` bytes starting `offset` bytes into the data.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        match &self.storage {
            Storage::File { file, base } => file
                .read_exact_at(buf, base + offset)
                .map_err(|e| IngestError::io(&self.path, e)),
            Storage::Memory(data) => {
                let start = offset as usize;
                buf.copy_from_slice(&data[start..start + buf.len()]);
                Ok(())
            }
            Storage::Stream(state) => {
                let mut s = state.lock().expect("stream lock");
                if offset < s.pos {
                    bail!(&self.path, "internal: stream read out of order");
                }
                let skip = offset - s.pos;
                let skipped = std::io::copy(&mut (&mut s.reader).take(skip), &mut std::io::sink())
                    .map_err(|e| IngestError::io(&self.path, e))?;
                if skipped < skip {
                    bail!(
                        &self.path,
                        "stream ends before the data its header announces"
                    );
                }
                read_full(&mut s.reader, buf).map_err(|e| IngestError::io(&self.path, e))?;
                s.pos = offset + buf.len() as u64;
                Ok(())
            }
        }
    }

    /// Reads `out.len()` consecutive elements starting at element `first`, converted to f32
    /// (`scratch` holds the raw bytes).
    pub fn read_f32(&self, first: u64, out: &mut [f32], scratch: &mut Vec<u8>) -> Result<()> {
        let w = self.element.size();
        scratch.resize(out.len() * w, 0);
        self.read_at(first * w as u64, scratch)?;
        self.element.floats_to_f32(scratch, out);
        Ok(())
    }

    /// Maps `len` bytes starting `offset` bytes into the data, when the tensor is a plain file
    /// region (None for streams and in-memory data). The map is released when dropped, so a
    /// caller that maps one slab at a time keeps its resident memory to one slab.
    pub fn map(&self, offset: u64, len: usize) -> Result<Option<memmap2::Mmap>> {
        let Storage::File { file, base } = &self.storage else {
            return Ok(None);
        };
        // SAFETY: the map is read-only and short-lived; a file truncated by another process
        // while mapped is the one hazard, as with every memory-mapped reader.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(base + offset)
                .len(len)
                .map(file)
        };
        map.map(Some).map_err(|e| IngestError::io(&self.path, e))
    }

    /// Byte offset of the first element within the file (None when not a file region).
    pub fn data_start(&self) -> Option<u64> {
        match &self.storage {
            Storage::File { base, .. } => Some(*base),
            _ => None,
        }
    }

    /// Reads the whole data into memory (used when the storage order is not slab order).
    pub fn load_into_memory(&mut self) -> Result<()> {
        if self.is_in_memory() {
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

fn pick_key(path: &Path, key: Option<&str>, names: &[&str]) -> Result<String> {
    match key {
        Some(k) if names.contains(&k) => Ok(k.to_string()),
        Some(k) => bail!(path, "no array named '{k}' (has: {})", names.join(", ")),
        None if names.contains(&"attentions") => Ok("attentions".to_string()),
        None if names.len() == 1 => Ok(names[0].to_string()),
        None if names.is_empty() => bail!(path, "contains no arrays"),
        None => bail!(
            path,
            "several arrays ({}); name one with --attn-key",
            names.join(", ")
        ),
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
