//! PyTorch files: the zip archive `torch.save` has written since PyTorch 1.6.
//!
//! `<archive>/data.pkl` is a pickle that rebuilds tensors from storages, and each storage's
//! bytes are the stored (uncompressed) member `<archive>/data/<key>`. The pickle is read by a
//! restricted unpickler that executes nothing: it knows the opcodes `torch.save` emits
//! (protocols 2 to 5) and accepts only torch's tensor-rebuild function, its storage types and
//! `collections.OrderedDict`; any other class is an error that names it. Tensors are then
//! read in place from their storage members, like stored `.npz` members.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;

use crate::dtype::{Dtype, Element};
use crate::error::{bail, IngestError, Result};
use crate::names::{self, Pick};
use crate::tensor::{extent, At, Found, Piece};

/// How to save instead, for files this reader does not take.
const SAVE_INSTEAD: &str =
    "save with torch.save (PyTorch ≥ 1.6, zip format), np.save, or safetensors save_file";

/// Nesting deeper than a dict of tuples of tensors (and the rebuild arguments inside) is not
/// something `torch.save` writes for attention; the bound also keeps dropping values shallow.
const MAX_DEPTH: u8 = 8;

/// No pickle of tensors has more dimensions than this.
const MAX_RANK: usize = 16;

/// True when `file` is a zip archive holding a `data.pkl` (a `torch.save` file).
pub(crate) fn is_torch_zip(file: &File) -> bool {
    let Ok(reader) = file.try_clone() else {
        return false;
    };
    zip::ZipArchive::new(reader).is_ok_and(|z| pickle_member(&z).is_some())
}

/// The message for a pickle that is not in a zip: a legacy `torch.save` file or `pickle.dump`.
pub(crate) fn not_zip(path: &Path, file: &File, len: u64) -> IngestError {
    let mut head = [0u8; 2];
    let what = if len >= 2 && file.read_exact_at(&mut head, 0).is_ok() && head[0] == 0x80 {
        "a legacy torch.save file (PyTorch < 1.6, or _use_new_zipfile_serialization=False) or a plain pickle, which cannot be read without running its code"
    } else {
        "neither a zip archive (torch.save since PyTorch 1.6) nor a pickle"
    };
    IngestError::invalid(
        path,
        format!("not a PyTorch file this reader takes: {what}; {SAVE_INSTEAD}"),
    )
}

/// The `…/data.pkl` member of a torch zip (the shallowest, should there be several).
fn pickle_member(zip: &zip::ZipArchive<File>) -> Option<String> {
    zip.file_names()
        .filter_map(|n| n.ok())
        .filter(|n| n == "data.pkl" || n.ends_with("/data.pkl"))
        .min_by_key(|n| n.matches('/').count())
        .map(|n| n.to_string())
}

/// The tensor(s) `key` picks in a PyTorch file.
pub(crate) fn find(path: &Path, file: &File, len: u64, key: Option<&str>) -> Result<Found> {
    with_pickle(path, file, len, |top, storages| {
        let (tensors, stacked, key) = select(path, top, key)?;
        storages.found(tensors, stacked, key)
    })
}

/// The steps of one `generate()` call in a PyTorch file, in order: the saved object (or the
/// dict entry `key`, default `attentions`, else the only entry) is a tuple or list of steps,
/// each a tuple or list of layers (stacked) or one tensor.
pub(crate) fn find_steps(
    path: &Path,
    file: &File,
    len: u64,
    key: Option<&str>,
) -> Result<Vec<Found>> {
    with_pickle(path, file, len, |top, storages| {
        let (steps, key) = match top {
            Value::Dict(d) => {
                let entries: Vec<(String, Value)> = d
                    .items
                    .iter()
                    .filter_map(|(k, v)| match k {
                        Value::Str(k) => Some((k.to_string(), v.clone())),
                        _ => None,
                    })
                    .collect();
                let names: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
                let name = match names::pick(path, key, &names, |_| None)? {
                    Pick::One(name) => name,
                    Pick::Stack { pattern, .. } => bail!(
                        path,
                        "--attn-key '{pattern}': name the entry holding the steps (a tuple of steps)"
                    ),
                };
                let at = names.iter().position(|n| *n == name).expect("picked");
                (entries[at].1.clone(), Some(name))
            }
            other => (other, None),
        };
        let what = key
            .as_ref()
            .map_or("the saved object".to_string(), |k| format!("entry '{k}'"));
        let (Value::Tuple(items) | Value::List(items)) = &steps else {
            bail!(
                path,
                "{what} is {}: generation steps are a tuple of steps, each a tuple of layers (generate(..., output_attentions=True, return_dict_in_generate=True).attentions)",
                steps.kind()
            );
        };
        if items.items.is_empty() {
            bail!(path, "{what} is an empty {}: no steps", steps.kind());
        }
        let one_step = items
            .items
            .iter()
            .all(|v| matches!(v, Value::Tensor(t) if t.shape.len() == 4));
        if one_step {
            bail!(
                path,
                "{what} is a {} of 4-D tensors, the layers (B, H, Q, K) of one step: generation steps are a tuple of steps, each a tuple of layers (save generate()'s whole `attentions`)",
                steps.kind()
            );
        }
        items
            .items
            .iter()
            .enumerate()
            .map(|(t, step)| {
                let (tensors, stacked) = tensors_of(path, step, &format!("step {t} of {what}"))?;
                storages.found(tensors, stacked, Some(format!("[{t}]")))
            })
            .collect()
    })
}

/// Reads the pickle of a PyTorch file and calls `f` with the object it holds and the
/// storages its tensors lie in.
fn with_pickle<T>(
    path: &Path,
    file: &File,
    len: u64,
    f: impl FnOnce(Value, &mut Storages) -> Result<T>,
) -> Result<T> {
    let mut head = [0u8; 4];
    if len < 4 || file.read_exact_at(&mut head, 0).is_err() || &head[..2] != b"PK" {
        return Err(not_zip(path, file, len));
    }
    let bad = |e: zip::result::ZipError| {
        IngestError::invalid(path, format!("not a valid PyTorch zip archive ({e})"))
    };
    let reader = file.try_clone().map_err(|e| IngestError::io(path, e))?;
    let mut zip = zip::ZipArchive::new(reader).map_err(bad)?;
    let Some(pkl) = pickle_member(&zip) else {
        bail!(
            path,
            "a zip archive without data.pkl: not a torch.save file"
        );
    };
    let prefix = pkl.strip_suffix("data.pkl").expect("ends so").to_string();
    let big_endian = match zip.by_name(&format!("{prefix}byteorder")) {
        Ok(mut entry) => {
            let mut order = String::new();
            entry
                .by_ref()
                .take(16)
                .read_to_string(&mut order)
                .map_err(|e| IngestError::io(path, e))?;
            match order.trim() {
                "little" => false,
                "big" => true,
                other => bail!(path, "unknown byte order '{other}' in {prefix}byteorder"),
            }
        }
        // Files from before the byteorder record were written little-endian.
        Err(_) => false,
    };
    let pickle = {
        let mut entry = zip.by_name(&pkl).map_err(bad)?;
        // A pickle of tensors is small; one larger than the file (only a deflated member can
        // claim that) is not read into memory.
        if entry.size() > len {
            bail!(
                path,
                "{pkl} claims {} bytes in a {len}-byte file",
                entry.size()
            );
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .by_ref()
            .take(len)
            .read_to_end(&mut bytes)
            .map_err(|e| IngestError::io(path, e))?;
        bytes
    };
    let top = Unpickler::new(path, &pkl, &pickle).run()?;

    let mut storages = Storages {
        path,
        zip: &mut zip,
        prefix: &prefix,
        len,
        big_endian,
        found: HashMap::new(),
    };
    f(top, &mut storages)
}

/// Tensors with the names errors use for them (a dict key, or `[i]` in a tuple).
type Named = Vec<(String, Rc<TensorRef>)>;

/// Picks the tensors the key asks for from what the pickle holds: a tensor; a tuple or list
/// of tensors (stacked as layers); or a dict of either, whose entry the key names (or, as a
/// pattern, whose tensor entries it stacks).
fn select(path: &Path, top: Value, key: Option<&str>) -> Result<(Named, bool, Option<String>)> {
    let entries = match top {
        Value::Dict(d) => d.items.clone(),
        other => {
            let (tensors, stacked) = tensors_of(path, &other, "the saved object")?;
            return Ok((tensors, stacked, None));
        }
    };
    let mut named: Vec<(String, Value)> = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        // Dicts of tensors have string keys; anything else in them is not attention.
        if let Value::Str(k) = k {
            if matches!(v, Value::Tensor(_) | Value::Tuple(_) | Value::List(_)) {
                named.push((k.to_string(), v));
            }
        }
    }
    let names: Vec<&str> = named.iter().map(|(k, _)| k.as_str()).collect();
    let entry = |name: &str| &named[names.iter().position(|n| *n == name).expect("listed")].1;
    let pick = names::pick(path, key, &names, |n| match entry(n) {
        Value::Tensor(t) => Some(t.shape.clone()),
        _ => None,
    })?;
    match pick {
        Pick::One(name) => {
            let (tensors, stacked) = tensors_of(path, entry(&name), &format!("entry '{name}'"))?;
            Ok((tensors, stacked, Some(name)))
        }
        Pick::Stack { pattern, names } => {
            let mut tensors = Vec::with_capacity(names.len());
            for name in names {
                match entry(&name) {
                    Value::Tensor(t) => tensors.push((name, t.clone())),
                    _ => bail!(
                        path,
                        "'{pattern}' matches entry '{name}', which is not one tensor: name it with --attn-key"
                    ),
                }
            }
            Ok((tensors, true, Some(pattern)))
        }
    }
}

/// The tensors of a tensor (not stacked) or of a tuple or list of tensors (stacked).
fn tensors_of(path: &Path, v: &Value, what: &str) -> Result<(Named, bool)> {
    match v {
        Value::Tensor(t) => Ok((vec![("tensor".to_string(), t.clone())], false)),
        Value::Tuple(s) | Value::List(s) => {
            if s.items.is_empty() {
                bail!(path, "{what} is an empty {}: no tensors to read", v.kind());
            }
            let mut out = Vec::with_capacity(s.items.len());
            for (i, item) in s.items.iter().enumerate() {
                match item {
                    Value::Tensor(t) => out.push((format!("[{i}]"), t.clone())),
                    // generate()'s attentions: a tuple of steps, each a tuple of layers.
                    Value::Tuple(_) | Value::List(_) => bail!(
                        path,
                        "{what} is a {} whose item {i} is a {}, not a tensor: if it holds the steps of one generate() call (out.attentions), read them with --generation-steps",
                        v.kind(),
                        item.kind()
                    ),
                    other => bail!(
                        path,
                        "{what} is a {} whose item {i} is {}, not a tensor",
                        v.kind(),
                        other.kind()
                    ),
                }
            }
            Ok((out, true))
        }
        other => bail!(
            path,
            "{what} is {}: expected a tensor, a tuple or list of tensors, or a dict of them",
            other.kind()
        ),
    }
}

/// Storage members of the archive, looked up once each.
struct Storages<'a> {
    path: &'a Path,
    zip: &'a mut zip::ZipArchive<File>,
    prefix: &'a str,
    len: u64,
    big_endian: bool,
    /// key → (file offset of the bytes, their length)
    found: HashMap<String, (u64, u64)>,
}

impl Storages<'_> {
    /// The pieces of `tensors`, as what was found under `key`.
    fn found(&mut self, tensors: Named, stacked: bool, key: Option<String>) -> Result<Found> {
        let pieces = tensors
            .into_iter()
            .map(|(name, t)| self.piece(name, &t))
            .collect::<Result<Vec<_>>>()?;
        Ok(Found {
            pieces,
            stacked,
            key,
        })
    }

    fn member(&mut self, key: &str) -> Result<(u64, u64)> {
        if let Some(&m) = self.found.get(key) {
            return Ok(m);
        }
        let path = self.path;
        let name = format!("{}data/{key}", self.prefix);
        let entry = self
            .zip
            .by_name(&name)
            .map_err(|e| IngestError::invalid(path, format!("storage '{key}': {name} ({e})")))?;
        if entry.compression() != zip::CompressionMethod::Stored {
            bail!(
                path,
                "storage '{key}' is compressed; torch.save stores storages uncompressed (was the archive re-zipped?)"
            );
        }
        let start = entry
            .data_start()
            .ok_or_else(|| IngestError::invalid(path, "member has no data offset"))?;
        let size = entry.size();
        if start.checked_add(size).is_none_or(|end| end > self.len) {
            bail!(path, "storage '{key}' extends past the end of the file");
        }
        self.found.insert(key.to_string(), (start, size));
        Ok((start, size))
    }

    /// The piece a tensor is, after checking that its storage holds every element it claims.
    fn piece(&mut self, name: String, t: &TensorRef) -> Result<Piece> {
        let path = self.path;
        let s = &t.storage;
        let w = s.element.size() as u64;
        let (start, size) = self.member(&s.key)?;
        if s.numel.checked_mul(w).is_none_or(|b| b > size) {
            bail!(
                path,
                "storage '{}' holds {size} bytes, shorter than the {} elements of {} its record claims",
                s.key,
                s.numel,
                s.element.name()
            );
        }
        // Even an empty tensor's offset must lie in its storage (its address is computed).
        let span = extent(&t.shape, &t.strides)
            .and_then(|e| e.checked_add(t.offset))
            .ok_or_else(|| {
                IngestError::invalid(
                    path,
                    format!("tensor {:?} is too large to address", t.shape),
                )
            })?;
        if span > s.numel {
            bail!(
                path,
                "tensor {name} of shape {:?} (offset {}, strides {:?}) reaches element {span} of storage '{}', which holds {}",
                t.shape,
                t.offset,
                t.strides,
                s.key,
                s.numel
            );
        }
        Ok(Piece {
            name,
            element: Element {
                dtype: s.element.dtype,
                big_endian: self.big_endian,
            },
            shape: t.shape.clone(),
            strides: t.strides.clone(),
            at: At::File(start + t.offset * w),
        })
    }
}

/// A storage named by the pickle: its key in `data/`, element type and length.
#[derive(Debug)]
struct StorageRef {
    key: String,
    element: Element,
    numel: u64,
}

/// A tensor rebuilt from a storage: offset and strides in elements.
#[derive(Debug)]
struct TensorRef {
    storage: Rc<StorageRef>,
    offset: u64,
    shape: Vec<usize>,
    strides: Vec<u64>,
}

/// The classes the unpickler accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    RebuildTensor,
    Storage(Dtype),
    OrderedDict,
}

/// A tuple, list or dict, with its nesting depth.
#[derive(Debug, Clone)]
struct Seq<T> {
    depth: u8,
    items: Vec<T>,
}

#[derive(Debug, Clone)]
enum Value {
    None,
    /// A bool (its value matters to nothing read here: `requires_grad`).
    Bool,
    Int(i64),
    Str(Rc<str>),
    Class(Class),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
    Tuple(Rc<Seq<Value>>),
    List(Rc<Seq<Value>>),
    Dict(Rc<Seq<(Value, Value)>>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool => "a bool",
            Value::Int(_) => "an int",
            Value::Str(_) => "a string",
            Value::Class(_) => "a class",
            Value::Storage(_) => "a storage",
            Value::Tensor(_) => "a tensor",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
        }
    }

    fn depth(&self) -> u8 {
        match self {
            Value::Tuple(s) | Value::List(s) => s.depth,
            Value::Dict(d) => d.depth,
            _ => 0,
        }
    }
}

/// The restricted unpickler: a stack machine over the opcodes torch.save emits.
struct Unpickler<'a> {
    path: &'a Path,
    member: &'a str,
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    /// Items copied when a list or dict shared with the memo is modified: bounded, so that a
    /// pickle cannot make copying quadratic.
    copied: usize,
}

impl<'a> Unpickler<'a> {
    fn new(path: &'a Path, member: &'a str, data: &'a [u8]) -> Self {
        Unpickler {
            path,
            member,
            data,
            pos: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            copied: 0,
        }
    }

    fn err(&self, what: impl std::fmt::Display) -> IngestError {
        IngestError::invalid(self.path, format!("{}: {what}", self.member))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(self.err("the pickle ends early"));
        };
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn pop(&mut self) -> Result<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("the pickle pops an empty stack"));
        }
        Ok(self.stack.pop().expect("checked"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let Some(mark) = self.marks.pop() else {
            return Err(self.err("the pickle closes a MARK it never opened"));
        };
        Ok(self.stack.split_off(mark))
    }

    fn top(&mut self) -> Result<&mut Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("the pickle uses an empty stack"));
        }
        Ok(self.stack.last_mut().expect("checked"))
    }

    fn string(&mut self, n: usize) -> Result<Value> {
        let bytes = self.take(n)?;
        let s = std::str::from_utf8(bytes).map_err(|_| self.err("a string is not UTF-8"))?;
        Ok(Value::Str(Rc::from(s)))
    }

    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().take(256).position(|&b| b == b'\n') else {
            return Err(self.err("a class name is not terminated"));
        };
        let s =
            std::str::from_utf8(&rest[..n]).map_err(|_| self.err("a class name is not UTF-8"))?;
        self.pos += n + 1;
        Ok(s)
    }

    fn seq(&self, items: Vec<Value>) -> Result<Seq<Value>> {
        let depth = items.iter().map(Value::depth).max().unwrap_or(0) + 1;
        if depth > MAX_DEPTH {
            return Err(self.err("the pickle nests deeper than a file of tensors does"));
        }
        Ok(Seq { depth, items })
    }

    fn run(mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let op = self.take(1)?[0];
            match op {
                0x80 => {
                    let v = self.take(1)?[0];
                    if !(2..=5).contains(&v) {
                        return Err(self.err(format!("pickle protocol {v} is not one torch.save writes")));
                    }
                }
                0x95 => {
                    self.take(8)?;
                } // FRAME: a hint for buffering
                b'.' => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                b'N' => self.stack.push(Value::None),
                0x88 | 0x89 => self.stack.push(Value::Bool),
                b'J' => {
                    let v = i32::from_le_bytes(self.array()?);
                    self.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.take(1)?[0];
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.array()?);
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes
                    let n = self.take(1)?[0] as usize;
                    if n > 8 {
                        return Err(self.err(format!("an integer of {n} bytes")));
                    }
                    let bytes = self.take(n)?;
                    let mut v = [if bytes.last().is_some_and(|b| b & 0x80 != 0) { 0xff } else { 0 }; 8];
                    v[..n].copy_from_slice(bytes);
                    self.stack.push(Value::Int(i64::from_le_bytes(v)));
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.array()?) as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x8c => {
                    let n = self.take(1)?[0] as usize;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.array()?);
                    let v = self.string(usize::try_from(n).unwrap_or(usize::MAX))?;
                    self.stack.push(v);
                }
                b'(' => self.marks.push(self.stack.len()),
                b')' => {
                    let s = self.seq(Vec::new())?;
                    self.stack.push(Value::Tuple(Rc::new(s)));
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let s = self.seq(items)?;
                    self.stack.push(Value::Tuple(Rc::new(s)));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let s = self.seq(items)?;
                    self.stack.push(Value::Tuple(Rc::new(s)));
                }
                b']' => {
                    let s = self.seq(Vec::new())?;
                    self.stack.push(Value::List(Rc::new(s)));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let s = self.seq(items)?;
                    self.stack.push(Value::List(Rc::new(s)));
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b'}' => self.stack.push(Value::Dict(Rc::new(Seq {
                    depth: 1,
                    items: Vec::new(),
                }))),
                b'd' => {
                    let items = self.pop_mark()?;
                    let mut d = Value::Dict(Rc::new(Seq {
                        depth: 1,
                        items: Vec::new(),
                    }));
                    self.set_items(&mut d, items)?;
                    self.stack.push(d);
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let mut d = self.pop()?;
                    self.set_items(&mut d, vec![k, v])?;
                    self.stack.push(d);
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let mut d = self.pop()?;
                    self.set_items(&mut d, items)?;
                    self.stack.push(d);
                }
                b'q' => {
                    let i = self.take(1)?[0] as u32;
                    self.put(i)?;
                }
                b'r' => {
                    let i = u32::from_le_bytes(self.array()?);
                    self.put(i)?;
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len()).map_err(|_| self.err("memo overflow"))?;
                    self.put(i)?;
                }
                b'h' => {
                    let i = self.take(1)?[0] as u32;
                    self.get(i)?;
                }
                b'j' => {
                    let i = u32::from_le_bytes(self.array()?);
                    self.get(i)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let c = self.class(module, name)?;
                    self.stack.push(Value::Class(c));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(self.err("STACK_GLOBAL without two strings"));
                    };
                    let c = self.class(&module, &name)?;
                    self.stack.push(Value::Class(c));
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let s = self.storage(pid)?;
                    self.stack.push(Value::Storage(Rc::new(s)));
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.reduce(callable, args)?;
                    self.stack.push(v);
                }
                _ => {
                    return Err(self.err(format!(
                        "pickle opcode 0x{op:02x} at byte {at} is not one torch.save writes for tensors"
                    )))
                }
            }
        }
    }

    fn put(&mut self, i: u32) -> Result<()> {
        let v = self.top()?.clone();
        self.memo.insert(i, v);
        Ok(())
    }

    fn get(&mut self, i: u32) -> Result<()> {
        let Some(v) = self.memo.get(&i).cloned() else {
            return Err(self.err(format!(
                "the pickle refers to memo entry {i} it never stored"
            )));
        };
        self.stack.push(v);
        Ok(())
    }

    /// Counts items about to be copied (a list or dict shared with the memo, then modified).
    fn charge(&mut self, shared: bool, n: usize) -> Result<()> {
        if shared {
            self.copied += n;
            if self.copied > self.data.len() {
                return Err(self.err("the pickle copies more than a file of tensors does"));
            }
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>) -> Result<()> {
        let depth = items.iter().map(Value::depth).max().unwrap_or(0) + 1;
        if depth > MAX_DEPTH {
            return Err(self.err("the pickle nests deeper than a file of tensors does"));
        }
        let list = self.top()?;
        let Value::List(l) = list else {
            let kind = list.kind();
            return Err(self.err(format!("the pickle appends to {kind}")));
        };
        let (shared, n) = (Rc::strong_count(l) > 1, l.items.len());
        self.charge(shared, n)?;
        let Some(Value::List(l)) = self.stack.last_mut() else {
            unreachable!("checked above")
        };
        let l = Rc::make_mut(l);
        l.depth = l.depth.max(depth);
        l.items.extend(items);
        Ok(())
    }

    fn set_items(&mut self, dict: &mut Value, items: Vec<Value>) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("the pickle sets a dict key without a value"));
        }
        let depth = items.iter().map(Value::depth).max().unwrap_or(0) + 1;
        if depth > MAX_DEPTH {
            return Err(self.err("the pickle nests deeper than a file of tensors does"));
        }
        let Value::Dict(d) = dict else {
            return Err(self.err(format!("the pickle sets items of {}", dict.kind())));
        };
        self.charge(Rc::strong_count(d) > 1, d.items.len())?;
        let d = Rc::make_mut(d);
        d.depth = d.depth.max(depth);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            // A later value for a key replaces the earlier one, as in Python.
            let same =
                |e: &(Value, Value)| matches!((&e.0, &k), (Value::Str(a), Value::Str(b)) if a == b);
            match d.items.iter_mut().find(|e| same(e)) {
                Some(e) => e.1 = v,
                None => d.items.push((k, v)),
            }
        }
        Ok(())
    }

    fn class(&self, module: &str, name: &str) -> Result<Class> {
        let storage = |dtype| Ok(Class::Storage(dtype));
        let int = |bytes, signed| storage(Dtype::Int { bytes, signed });
        match (module, name) {
            ("torch._utils", "_rebuild_tensor_v2") => Ok(Class::RebuildTensor),
            ("collections", "OrderedDict") => Ok(Class::OrderedDict),
            ("torch", "HalfStorage") => storage(Dtype::F16),
            ("torch", "BFloat16Storage") => storage(Dtype::BF16),
            ("torch", "FloatStorage") => storage(Dtype::F32),
            ("torch", "DoubleStorage") => storage(Dtype::F64),
            ("torch", "BoolStorage") => storage(Dtype::Bool),
            ("torch", "ByteStorage") => int(1, false),
            ("torch", "CharStorage") => int(1, true),
            ("torch", "ShortStorage") => int(2, true),
            ("torch", "IntStorage") => int(4, true),
            ("torch", "LongStorage") => int(8, true),
            _ => Err(self.err(format!(
                "the pickle names {module}.{name}, which is not a plain tensor or a tuple, list or dict of them (nothing is executed); {SAVE_INSTEAD}"
            ))),
        }
    }

    /// A persistent id: ('storage', storage class, key, location, numel).
    fn storage(&self, pid: Value) -> Result<StorageRef> {
        let bad = || self.err("a persistent id is not ('storage', type, key, location, size)");
        let Value::Tuple(t) = pid else {
            return Err(bad());
        };
        let [Value::Str(tag), Value::Class(Class::Storage(dtype)), Value::Str(key), Value::Str(_), Value::Int(numel)] =
            &t.items[..]
        else {
            return Err(bad());
        };
        if &**tag != "storage" || *numel < 0 {
            return Err(bad());
        }
        // Keys are torch's own numbering; anything that could leave data/ is refused.
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(self.err(format!("storage key '{key}' is not a plain name")));
        }
        Ok(StorageRef {
            key: key.to_string(),
            element: Element::little(*dtype),
            numel: *numel as u64,
        })
    }

    fn reduce(&self, callable: Value, args: Value) -> Result<Value> {
        let Value::Tuple(args) = args else {
            return Err(self.err("a call without an argument tuple"));
        };
        match callable {
            Value::Class(Class::OrderedDict) if args.items.is_empty() => {
                Ok(Value::Dict(Rc::new(Seq {
                    depth: 1,
                    items: Vec::new(),
                })))
            }
            Value::Class(Class::RebuildTensor) => self.rebuild_tensor(&args.items),
            other => Err(self.err(format!(
                "the pickle calls {}, which builds no tensor",
                other.kind()
            ))),
        }
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
    fn rebuild_tensor(&self, args: &[Value]) -> Result<Value> {
        let bad = || self.err("_rebuild_tensor_v2 with arguments torch does not write");
        let [Value::Storage(storage), Value::Int(offset), Value::Tuple(size), Value::Tuple(stride), Value::Bool, _, ..] =
            args
        else {
            return Err(bad());
        };
        if args.len() > 7
            || *offset < 0
            || size.items.len() != stride.items.len()
            || size.items.len() > MAX_RANK
        {
            return Err(bad());
        }
        let ints = |s: &Seq<Value>| -> Result<Vec<u64>> {
            s.items
                .iter()
                .map(|v| match v {
                    Value::Int(i) if *i >= 0 => Ok(*i as u64),
                    _ => Err(bad()),
                })
                .collect()
        };
        let shape = ints(size)?
            .into_iter()
            .map(|d| usize::try_from(d).map_err(|_| bad()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Value::Tensor(Rc::new(TensorRef {
            storage: storage.clone(),
            offset: *offset as u64,
            shape,
            strides: ints(stride)?,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-written protocol-2 pickle of `_rebuild_tensor_v2` on storage '0' (f32, 6
    /// elements) with the given offset, size and stride (each a BININT1).
    fn tensor_pickle(offset: u8, size: &[u8], stride: &[u8]) -> Vec<u8> {
        let mut p =
            b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nq\x00((X\x07\x00\x00\x00storage".to_vec();
        p.extend(b"ctorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQ");
        p.extend([b'K', offset, b'(']);
        for &d in size {
            p.extend([b'K', d]);
        }
        p.push(b't');
        p.push(b'(');
        for &s in stride {
            p.extend([b'K', s]);
        }
        p.extend(b"t\x89ccollections\nOrderedDict\n)RtR.");
        p
    }

    fn unpickle(p: &[u8]) -> Result<Value> {
        Unpickler::new(Path::new("t.pt"), "t/data.pkl", p).run()
    }

    #[test]
    fn rebuilds_a_strided_view() {
        let v = unpickle(&tensor_pickle(1, &[2, 2], &[3, 1])).unwrap();
        let Value::Tensor(t) = v else { panic!("{v:?}") };
        assert_eq!(
            (t.offset, &t.shape[..], &t.strides[..]),
            (1, &[2, 2][..], &[3, 1][..])
        );
        assert_eq!(t.storage.key, "0");
        assert_eq!(t.storage.numel, 6);
    }

    #[test]
    fn refuses_other_classes_and_opcodes() {
        let e = unpickle(b"\x80\x02cos\nsystem\nq\x00.").unwrap_err();
        assert!(e.to_string().contains("names os.system"), "{e}");
        let e = unpickle(b"\x80\x02cbuiltins\neval\n.").unwrap_err();
        assert!(e.to_string().contains("builtins.eval"), "{e}");
        let e = unpickle(b"\x80\x02G\x00\x00\x00\x00\x00\x00\x00\x00.").unwrap_err();
        assert!(e.to_string().contains("opcode 0x47"), "{e}");
        let e = unpickle(b"\x80\x02(((((((((((]tttttttttt.").unwrap_err();
        assert!(e.to_string().contains("nests deeper"), "{e}");
        let e = unpickle(b"\x80\x02h\x05.").unwrap_err();
        assert!(e.to_string().contains("memo entry 5"), "{e}");
    }

    #[test]
    fn containers_and_memo() {
        // {'a': (t, t)} with the second tensor a memo reference to the first.
        let mut p = b"\x80\x02}q\x00(X\x01\x00\x00\x00a".to_vec();
        let t = tensor_pickle(0, &[3], &[1]);
        p.extend(&t[2..t.len() - 1]);
        p.extend(b"q\x01h\x01\x86u.");
        let v = unpickle(&p).unwrap();
        let (tensors, stacked, key) = select(Path::new("t.pt"), v, None).unwrap();
        assert!(stacked);
        assert_eq!(key.as_deref(), Some("a"));
        assert_eq!(tensors.len(), 2);
        let e = select(Path::new("t.pt"), unpickle(b"\x80\x02).").unwrap(), None).unwrap_err();
        assert!(e.to_string().contains("empty tuple"), "{e}");
    }
}
