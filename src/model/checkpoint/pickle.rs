//! A small, safe reader of Python pickles (protocols 0 to 5), for the index of `torch.save` files.
//!
//! Nothing is executed: `GLOBAL`/`STACK_GLOBAL` give an inert [`Obj::Global`] naming the
//! callable; `REDUCE`, `NEWOBJ`, `INST`, `OBJ` give an [`Obj::Call`] that records the callable
//! and its arguments; `BUILD`, `SETITEMS` and `APPENDS` on such a call record the state and the
//! items. Persistent ids (`PERSID`, `BINPERSID`) give [`Obj::PersId`]. The caller interprets
//! what it recognises (see `pytorch.rs`).
//!
//! Objects live in an arena ([`Pickle::objs`]) and refer to each other by index, so sharing
//! through the memo costs nothing and mutation (`SETITEMS` after `BINPUT`) is seen by every
//! reference, as in Python. Hostile input is bounded: every length the file claims is checked
//! against the bytes left before anything is allocated, and the object count, stack depth, memo
//! size and total string size have limits ([`Limits`]). The machine is a loop, not a recursion.

use std::collections::HashMap;
use std::io::Read;

use crate::model::LoadError;

/// Index of an object in [`Pickle::objs`].
pub type Id = u32;

/// A value of the pickle. Containers hold the ids of their items.
#[derive(Clone, Debug, PartialEq)]
pub enum Obj {
    None,
    Bool(bool),
    Int(i64),
    /// An integer that does not fit `i64`: its little-endian two's-complement bytes.
    BigInt(Box<[u8]>),
    Float(f64),
    Str(Box<str>),
    Bytes(Box<[u8]>),
    Tuple(Box<[Id]>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Set(Vec<Id>),
    /// A named global (`module.name`), never imported.
    Global(Box<(String, String)>),
    /// A call (`REDUCE`, `NEWOBJ`, ...) that was recorded, not made.
    Call(Box<Call>),
    /// A persistent reference; the id is its key object.
    PersId(Id),
}

/// A recorded call `func(*args, **kwargs)` with what later opcodes did to its result.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub func: Id,
    /// A tuple, normally.
    pub args: Id,
    pub kwargs: Option<Id>,
    /// The argument of `BUILD` (`__setstate__`), if any.
    pub state: Option<Id>,
    /// Items set by `SETITEM(S)` (an `OrderedDict` is a call followed by `SETITEMS`).
    pub items: Vec<(Id, Id)>,
    /// Items added by `APPEND(S)` / `ADDITEMS`.
    pub list: Vec<Id>,
}

/// Bounds on what one pickle may make, so hostile input cannot exhaust memory.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Objects in the arena.
    pub max_objects: usize,
    /// Items on the stack plus marks.
    pub max_stack: usize,
    /// Memo entries.
    pub max_memo: usize,
    /// Ids held by all containers together.
    pub max_items: usize,
    /// Bytes of all strings, byte strings and big integers together.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        // A FLAVR checkpoint's index (weights and Adam state) makes a few thousand objects.
        Limits {
            max_objects: 1 << 20,
            max_stack: 1 << 20,
            max_memo: 1 << 20,
            max_items: 1 << 22,
            max_bytes: 64 << 20,
        }
    }
}

/// A parsed pickle: the arena and the object `STOP` returned.
#[derive(Clone, Debug)]
pub struct Pickle {
    pub objs: Vec<Obj>,
    pub root: Id,
    /// Bytes the pickle took, through its `STOP`.
    pub len: u64,
}

/// Reads one pickle from `input`, which may hold at most `available` more bytes (the rest of
/// the file: lengths claimed beyond it are reported as truncation before anything is
/// allocated). Reads nothing past the `STOP` opcode. Error messages say what went wrong where
/// in the pickle; the caller says which pickle it was.
pub fn load(input: &mut dyn Read, available: u64, limits: Limits) -> Result<Pickle, LoadError> {
    let mut vm = Machine {
        src: Source {
            r: input,
            pos: 0,
            end: available,
        },
        objs: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        items: 0,
        bytes: 0,
        limits,
    };
    let root = vm.run()?;
    Ok(Pickle {
        objs: vm.objs,
        root,
        len: vm.src.pos,
    })
}

/// Reads one pickle held in memory.
pub fn load_slice(bytes: &[u8], limits: Limits) -> Result<Pickle, LoadError> {
    let mut r = bytes;
    load(&mut r, bytes.len() as u64, limits)
}

fn malformed(what: impl std::fmt::Display) -> LoadError {
    LoadError::Malformed(what.to_string())
}

/// The input with its position and its end.
struct Source<'a> {
    r: &'a mut dyn Read,
    pos: u64,
    end: u64,
}

impl Source<'_> {
    fn left(&self) -> u64 {
        self.end.saturating_sub(self.pos)
    }

    fn truncated(&self, what: &str) -> LoadError {
        LoadError::Truncated(format!(
            "{what} at byte {} runs past the end of the data",
            self.pos
        ))
    }

    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), LoadError> {
        if (buf.len() as u64) > self.left() {
            return Err(self.truncated(what));
        }
        match self.r.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(self.truncated(what)),
            Err(e) => Err(LoadError::Io(e.to_string())),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], LoadError> {
        let mut b = [0u8; N];
        self.fill(&mut b, what)?;
        Ok(b)
    }

    fn u8(&mut self, what: &str) -> Result<u8, LoadError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// `n` bytes; `n` is checked against what is left before allocating, and the buffer grows
    /// with the data actually read.
    fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>, LoadError> {
        if n > self.left() {
            return Err(self.truncated(what));
        }
        let mut v = Vec::with_capacity(n.min(1 << 16) as usize);
        let got = (&mut *self.r)
            .take(n)
            .read_to_end(&mut v)
            .map_err(|e| LoadError::Io(e.to_string()))?;
        self.pos += got as u64;
        if (got as u64) < n {
            return Err(self.truncated(what));
        }
        Ok(v)
    }

    /// A line without its `\n` (protocol 0 arguments), at most `max` bytes.
    fn line(&mut self, what: &str) -> Result<Vec<u8>, LoadError> {
        const MAX: usize = 1 << 16;
        let mut v = Vec::new();
        loop {
            let b = self.u8(what)?;
            if b == b'\n' {
                return Ok(v);
            }
            if v.len() >= MAX {
                return Err(malformed(format!("{what}: line longer than {MAX} bytes")));
            }
            v.push(b);
        }
    }
}

struct Machine<'a> {
    src: Source<'a>,
    objs: Vec<Obj>,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
    /// Ids held by containers.
    items: usize,
    /// Bytes held by strings.
    bytes: u64,
    limits: Limits,
}

impl Machine<'_> {
    fn new_obj(&mut self, obj: Obj) -> Result<Id, LoadError> {
        if self.objs.len() >= self.limits.max_objects {
            return Err(malformed(format!(
                "more than {} objects",
                self.limits.max_objects
            )));
        }
        let id = self.objs.len() as Id;
        self.objs.push(obj);
        Ok(id)
    }

    fn push_id(&mut self, id: Id) -> Result<(), LoadError> {
        if self.stack.len() + self.marks.len() >= self.limits.max_stack {
            return Err(malformed(format!(
                "stack deeper than {}",
                self.limits.max_stack
            )));
        }
        self.stack.push(id);
        Ok(())
    }

    fn push(&mut self, obj: Obj) -> Result<(), LoadError> {
        let id = self.new_obj(obj)?;
        self.push_id(id)
    }

    fn pop(&mut self, op: &str) -> Result<Id, LoadError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(malformed(format!("{op} on an empty stack")));
        }
        self.stack
            .pop()
            .ok_or_else(|| malformed(format!("{op} on an empty stack")))
    }

    fn top(&self, op: &str) -> Result<Id, LoadError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(malformed(format!("{op} on an empty stack")));
        }
        self.stack
            .last()
            .copied()
            .ok_or_else(|| malformed(format!("{op} on an empty stack")))
    }

    /// The items above the last mark, removing them and the mark.
    fn pop_mark(&mut self, op: &str) -> Result<Vec<Id>, LoadError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| malformed(format!("{op} without a MARK")))?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn count_items(&mut self, n: usize) -> Result<(), LoadError> {
        self.items = self.items.saturating_add(n);
        if self.items > self.limits.max_items {
            return Err(malformed(format!(
                "containers hold more than {} items",
                self.limits.max_items
            )));
        }
        Ok(())
    }

    fn count_bytes(&mut self, n: u64) -> Result<(), LoadError> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.limits.max_bytes {
            return Err(malformed(format!(
                "strings longer than {} bytes in all",
                self.limits.max_bytes
            )));
        }
        Ok(())
    }

    /// `n` bytes of a string's payload; `n` is checked before allocation.
    fn payload(&mut self, n: u64, what: &str) -> Result<Vec<u8>, LoadError> {
        if n > self.src.left() {
            return Err(self.src.truncated(what));
        }
        self.count_bytes(n)?;
        self.src.bytes(n, what)
    }

    fn utf8(&mut self, n: u64, what: &str) -> Result<Obj, LoadError> {
        let b = self.payload(n, what)?;
        let s = String::from_utf8(b).map_err(|_| malformed(format!("{what} is not UTF-8")))?;
        Ok(Obj::Str(s.into_boxed_str()))
    }

    fn tuple(&mut self, items: Vec<Id>) -> Result<(), LoadError> {
        self.count_items(items.len())?;
        self.push(Obj::Tuple(items.into_boxed_slice()))
    }

    fn memo_put(&mut self, key: u64) -> Result<(), LoadError> {
        let top = self.top("PUT")?;
        if !self.memo.contains_key(&key) && self.memo.len() >= self.limits.max_memo {
            return Err(malformed(format!(
                "memo larger than {} entries",
                self.limits.max_memo
            )));
        }
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), LoadError> {
        let id = *self
            .memo
            .get(&key)
            .ok_or_else(|| malformed(format!("memo key {key} read before it was written")))?;
        self.push_id(id)
    }

    fn global(&mut self, module: String, name: String) -> Result<Id, LoadError> {
        self.count_bytes((module.len() + name.len()) as u64)?;
        self.new_obj(Obj::Global(Box::new((module, name))))
    }

    fn line_str(&mut self, what: &str) -> Result<String, LoadError> {
        let l = self.src.line(what)?;
        String::from_utf8(l).map_err(|_| malformed(format!("{what} is not UTF-8")))
    }

    fn line_int(&mut self, what: &str) -> Result<i64, LoadError> {
        let l = self.line_str(what)?;
        let t = l.trim_end_matches('L');
        t.trim()
            .parse::<i64>()
            .map_err(|_| malformed(format!("{what} `{l}` is not an integer")))
    }

    fn memo_key(&mut self, what: &str) -> Result<u64, LoadError> {
        let k = self.line_int(what)?;
        u64::try_from(k).map_err(|_| malformed(format!("{what}: negative memo key")))
    }

    fn call(&mut self, func: Id, args: Id, kwargs: Option<Id>) -> Result<(), LoadError> {
        self.push(Obj::Call(Box::new(Call {
            func,
            args,
            kwargs,
            state: None,
            items: Vec::new(),
            list: Vec::new(),
        })))
    }

    fn set_items(&mut self, target: Id, pairs: Vec<Id>, op: &str) -> Result<(), LoadError> {
        if !pairs.len().is_multiple_of(2) {
            return Err(malformed(format!("{op} with an odd number of items")));
        }
        self.count_items(pairs.len())?;
        let kvs = pairs.chunks_exact(2).map(|kv| (kv[0], kv[1]));
        match self.objs.get_mut(target as usize) {
            Some(Obj::Dict(d)) => d.extend(kvs),
            Some(Obj::Call(c)) => c.items.extend(kvs),
            _ => return Err(malformed(format!("{op} on something not a dict"))),
        }
        Ok(())
    }

    fn append(&mut self, target: Id, items: Vec<Id>, op: &str) -> Result<(), LoadError> {
        self.count_items(items.len())?;
        match self.objs.get_mut(target as usize) {
            Some(Obj::List(l) | Obj::Set(l)) => l.extend(items),
            Some(Obj::Call(c)) => c.list.extend(items),
            _ => return Err(malformed(format!("{op} on something not a list"))),
        }
        Ok(())
    }

    fn run(&mut self) -> Result<Id, LoadError> {
        loop {
            let op = self.src.u8("opcode")?;
            match op {
                // PROTO
                0x80 => {
                    let p = self.src.u8("PROTO")?;
                    if p > 5 {
                        return Err(malformed(format!("unsupported protocol {p}")));
                    }
                }
                // FRAME: a length hint; the data is read as a stream anyway.
                0x95 => {
                    let n = u64::from_le_bytes(self.src.array("FRAME")?);
                    if n > self.src.left() {
                        return Err(self.src.truncated("FRAME"));
                    }
                }
                // STOP
                b'.' => {
                    let id = self.pop("STOP")?;
                    return Ok(id);
                }
                b'(' => {
                    if self.stack.len() + self.marks.len() >= self.limits.max_stack {
                        return Err(malformed("too many MARKs"));
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    // POP: a bare mark is popped too (Python pops the metastack then).
                    let floor = self.marks.last().copied().unwrap_or(0);
                    if self.stack.len() > floor {
                        self.stack.pop();
                    } else if self.marks.pop().is_none() {
                        return Err(malformed("POP on an empty stack"));
                    }
                }
                b'1' => {
                    self.pop_mark("POP_MARK")?;
                }
                b'2' => {
                    let id = self.top("DUP")?;
                    self.push_id(id)?;
                }
                // Scalars.
                b'N' => self.push(Obj::None)?,
                0x88 => self.push(Obj::Bool(true))?,
                0x89 => self.push(Obj::Bool(false))?,
                b'I' => {
                    let l = self.line_str("INT")?;
                    let v = match l.as_str() {
                        "00" => Obj::Bool(false),
                        "01" => Obj::Bool(true),
                        s => Obj::Int(
                            s.trim()
                                .parse()
                                .map_err(|_| malformed(format!("INT `{s}` is not an integer")))?,
                        ),
                    };
                    self.push(v)?;
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.src.array("BININT")?);
                    self.push(Obj::Int(v.into()))?;
                }
                b'K' => {
                    let v = self.src.u8("BININT1")?;
                    self.push(Obj::Int(v.into()))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.src.array("BININT2")?);
                    self.push(Obj::Int(v.into()))?;
                }
                b'L' => {
                    let v = self.line_int("LONG")?;
                    self.push(Obj::Int(v))?;
                }
                0x8a => {
                    let n = self.src.u8("LONG1")?;
                    let b = self.payload(n.into(), "LONG1")?;
                    self.push(long(b))?;
                }
                0x8b => {
                    let n = i32::from_le_bytes(self.src.array("LONG4")?);
                    let n = u64::try_from(n).map_err(|_| malformed("LONG4 of negative length"))?;
                    let b = self.payload(n, "LONG4")?;
                    self.push(long(b))?;
                }
                b'F' => {
                    let l = self.line_str("FLOAT")?;
                    let v = l
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| malformed(format!("FLOAT `{l}` is not a number")))?;
                    self.push(Obj::Float(v))?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.src.array("BINFLOAT")?);
                    self.push(Obj::Float(v))?;
                }
                // Strings.
                b'S' => {
                    let l = self.src.line("STRING")?;
                    self.count_bytes(l.len() as u64)?;
                    let s = unquote(&l).ok_or_else(|| malformed("STRING is not quoted"))?;
                    self.push(Obj::Str(String::from_utf8_lossy(&s).into()))?;
                }
                b'T' => {
                    let n = i32::from_le_bytes(self.src.array("BINSTRING")?);
                    let n =
                        u64::try_from(n).map_err(|_| malformed("BINSTRING of negative length"))?;
                    let b = self.payload(n, "BINSTRING")?;
                    self.push(Obj::Str(String::from_utf8_lossy(&b).into()))?;
                }
                b'U' => {
                    let n = self.src.u8("SHORT_BINSTRING")?;
                    let b = self.payload(n.into(), "SHORT_BINSTRING")?;
                    self.push(Obj::Str(String::from_utf8_lossy(&b).into()))?;
                }
                b'V' => {
                    let l = self.src.line("UNICODE")?;
                    self.count_bytes(l.len() as u64)?;
                    let s =
                        raw_unicode_escape(&l).ok_or_else(|| malformed("bad UNICODE escape"))?;
                    self.push(Obj::Str(s.into_boxed_str()))?;
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.src.array("BINUNICODE")?);
                    let s = self.utf8(n.into(), "BINUNICODE")?;
                    self.push(s)?;
                }
                0x8c => {
                    let n = self.src.u8("SHORT_BINUNICODE")?;
                    let s = self.utf8(n.into(), "SHORT_BINUNICODE")?;
                    self.push(s)?;
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.src.array("BINUNICODE8")?);
                    let s = self.utf8(n, "BINUNICODE8")?;
                    self.push(s)?;
                }
                b'B' => {
                    let n = u32::from_le_bytes(self.src.array("BINBYTES")?);
                    let b = self.payload(n.into(), "BINBYTES")?;
                    self.push(Obj::Bytes(b.into_boxed_slice()))?;
                }
                b'C' => {
                    let n = self.src.u8("SHORT_BINBYTES")?;
                    let b = self.payload(n.into(), "SHORT_BINBYTES")?;
                    self.push(Obj::Bytes(b.into_boxed_slice()))?;
                }
                0x8e | 0x96 => {
                    let n = u64::from_le_bytes(self.src.array("BINBYTES8")?);
                    let b = self.payload(n, "BINBYTES8")?;
                    self.push(Obj::Bytes(b.into_boxed_slice()))?;
                }
                // NEXT_BUFFER
                0x97 => {
                    return Err(malformed(
                        "out-of-band buffers (NEXT_BUFFER) are not supported",
                    ));
                }
                // READONLY_BUFFER
                0x98 => {
                    self.top("READONLY_BUFFER")?;
                }
                // Tuples.
                b')' => self.tuple(Vec::new())?,
                b't' => {
                    let items = self.pop_mark("TUPLE")?;
                    self.tuple(items)?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = vec![0; n];
                    for slot in items.iter_mut().rev() {
                        *slot = self.pop("TUPLEn")?;
                    }
                    self.tuple(items)?;
                }
                // Lists.
                b']' => self.push(Obj::List(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark("LIST")?;
                    self.count_items(items.len())?;
                    self.push(Obj::List(items))?;
                }
                b'a' => {
                    let v = self.pop("APPEND")?;
                    let target = self.top("APPEND")?;
                    self.append(target, vec![v], "APPEND")?;
                }
                b'e' => {
                    let items = self.pop_mark("APPENDS")?;
                    let target = self.top("APPENDS")?;
                    self.append(target, items, "APPENDS")?;
                }
                // Dicts.
                b'}' => self.push(Obj::Dict(Vec::new()))?,
                b'd' => {
                    let items = self.pop_mark("DICT")?;
                    if !items.len().is_multiple_of(2) {
                        return Err(malformed("DICT with an odd number of items"));
                    }
                    self.count_items(items.len())?;
                    let kvs = items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect();
                    self.push(Obj::Dict(kvs))?;
                }
                b's' => {
                    let v = self.pop("SETITEM")?;
                    let k = self.pop("SETITEM")?;
                    let target = self.top("SETITEM")?;
                    self.set_items(target, vec![k, v], "SETITEM")?;
                }
                b'u' => {
                    let items = self.pop_mark("SETITEMS")?;
                    let target = self.top("SETITEMS")?;
                    self.set_items(target, items, "SETITEMS")?;
                }
                // Sets.
                0x8f => self.push(Obj::Set(Vec::new()))?,
                0x90 => {
                    let items = self.pop_mark("ADDITEMS")?;
                    let target = self.top("ADDITEMS")?;
                    self.append(target, items, "ADDITEMS")?;
                }
                0x91 => {
                    let items = self.pop_mark("FROZENSET")?;
                    self.count_items(items.len())?;
                    self.push(Obj::Set(items))?;
                }
                // Memo.
                b'g' => {
                    let k = self.memo_key("GET")?;
                    self.memo_get(k)?;
                }
                b'h' => {
                    let k = self.src.u8("BINGET")?;
                    self.memo_get(k.into())?;
                }
                b'j' => {
                    let k = u32::from_le_bytes(self.src.array("LONG_BINGET")?);
                    self.memo_get(k.into())?;
                }
                b'p' => {
                    let k = self.memo_key("PUT")?;
                    self.memo_put(k)?;
                }
                b'q' => {
                    let k = self.src.u8("BINPUT")?;
                    self.memo_put(k.into())?;
                }
                b'r' => {
                    let k = u32::from_le_bytes(self.src.array("LONG_BINPUT")?);
                    self.memo_put(k.into())?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                // Globals and calls: recorded, never executed.
                b'c' => {
                    let module = self.line_str("GLOBAL module")?;
                    let name = self.line_str("GLOBAL name")?;
                    let id = self.global(module, name)?;
                    self.push_id(id)?;
                }
                0x93 => {
                    let name = self.pop("STACK_GLOBAL")?;
                    let module = self.pop("STACK_GLOBAL")?;
                    let (Some(Obj::Str(m)), Some(Obj::Str(n))) =
                        (self.objs.get(module as usize), self.objs.get(name as usize))
                    else {
                        return Err(malformed("STACK_GLOBAL on something not two strings"));
                    };
                    let (m, n) = (m.to_string(), n.to_string());
                    let id = self.global(m, n)?;
                    self.push_id(id)?;
                }
                b'R' => {
                    let args = self.pop("REDUCE")?;
                    let func = self.pop("REDUCE")?;
                    self.call(func, args, None)?;
                }
                0x81 => {
                    let args = self.pop("NEWOBJ")?;
                    let cls = self.pop("NEWOBJ")?;
                    self.call(cls, args, None)?;
                }
                0x92 => {
                    let kwargs = self.pop("NEWOBJ_EX")?;
                    let args = self.pop("NEWOBJ_EX")?;
                    let cls = self.pop("NEWOBJ_EX")?;
                    self.call(cls, args, Some(kwargs))?;
                }
                b'i' => {
                    let module = self.line_str("INST module")?;
                    let name = self.line_str("INST name")?;
                    let args = self.pop_mark("INST")?;
                    let cls = self.global(module, name)?;
                    self.tuple(args)?;
                    let args = self.pop("INST")?;
                    self.call(cls, args, None)?;
                }
                b'o' => {
                    let mut items = self.pop_mark("OBJ")?;
                    if items.is_empty() {
                        return Err(malformed("OBJ without a class"));
                    }
                    let cls = items.remove(0);
                    self.tuple(items)?;
                    let args = self.pop("OBJ")?;
                    self.call(cls, args, None)?;
                }
                b'b' => {
                    let state = self.pop("BUILD")?;
                    let target = self.top("BUILD")?;
                    // Only recorded calls keep a state; other objects ignore it.
                    if let Some(Obj::Call(c)) = self.objs.get_mut(target as usize) {
                        c.state = Some(state);
                    }
                }
                b'P' => {
                    let pid = self.src.line("PERSID")?;
                    self.count_bytes(pid.len() as u64)?;
                    let s = String::from_utf8_lossy(&pid).into_owned();
                    let key = self.new_obj(Obj::Str(s.into_boxed_str()))?;
                    self.push(Obj::PersId(key))?;
                }
                b'Q' => {
                    let key = self.pop("BINPERSID")?;
                    self.push(Obj::PersId(key))?;
                }
                0x82..=0x84 => {
                    return Err(malformed(
                        "extension registry opcodes (EXT1/EXT2/EXT4) are not supported",
                    ));
                }
                other => {
                    return Err(malformed(format!(
                        "unknown opcode 0x{other:02x} at byte {}",
                        self.src.pos - 1
                    )));
                }
            }
        }
    }
}

/// A little-endian two's-complement integer of `LONG1`/`LONG4`.
fn long(b: Vec<u8>) -> Obj {
    if b.len() <= 8 {
        let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) {
            0xff
        } else {
            0
        };
        let mut w = [fill; 8];
        w[..b.len()].copy_from_slice(&b);
        Obj::Int(i64::from_le_bytes(w))
    } else {
        Obj::BigInt(b.into_boxed_slice())
    }
}

/// The bytes of a protocol-0 `STRING` argument (a Python `repr` of a byte string).
fn unquote(l: &[u8]) -> Option<Vec<u8>> {
    let q = *l.first()?;
    if !(q == b'\'' || q == b'"') || l.len() < 2 || l[l.len() - 1] != q {
        return None;
    }
    let body = &l[1..l.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = *body.get(i)?;
        i += 1;
        out.push(match e {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'0' => 0,
            b'x' => {
                let h = std::str::from_utf8(body.get(i..i + 2)?).ok()?;
                i += 2;
                u8::from_str_radix(h, 16).ok()?
            }
            other => other,
        });
    }
    Some(out)
}

/// Python's `raw-unicode-escape` decoding (protocol-0 `UNICODE`): `\uXXXX`, `\UXXXXXXXX`,
/// every other byte is Latin-1.
fn raw_unicode_escape(l: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(l.len());
    let mut i = 0;
    while i < l.len() {
        let c = l[i];
        let digits = match (c, l.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => 0,
        };
        if digits == 0 {
            out.push(char::from(c));
            i += 1;
            continue;
        }
        let h = std::str::from_utf8(l.get(i + 2..i + 2 + digits)?).ok()?;
        out.push(char::from_u32(u32::from_str_radix(h, 16).ok()?)?);
        i += 2 + digits;
    }
    Some(out)
}

impl Pickle {
    pub fn get(&self, id: Id) -> Option<&Obj> {
        self.objs.get(id as usize)
    }

    pub fn str(&self, id: Id) -> Option<&str> {
        match self.get(id)? {
            Obj::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn int(&self, id: Id) -> Option<i64> {
        match self.get(id)? {
            Obj::Int(v) => Some(*v),
            Obj::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    pub fn tuple(&self, id: Id) -> Option<&[Id]> {
        match self.get(id)? {
            Obj::Tuple(t) => Some(t),
            Obj::List(l) => Some(l),
            _ => None,
        }
    }

    /// `(module, name)` of a global.
    pub fn global(&self, id: Id) -> Option<(&str, &str)> {
        match self.get(id)? {
            Obj::Global(g) => Some((g.0.as_str(), g.1.as_str())),
            _ => None,
        }
    }

    pub fn call(&self, id: Id) -> Option<&Call> {
        match self.get(id)? {
            Obj::Call(c) => Some(c),
            _ => None,
        }
    }

    /// The items of a dict: a `dict`, or a recorded `collections.OrderedDict(...)` call (its
    /// optional list of pairs, then what `SETITEMS` added). `None` for anything else.
    pub fn dict_items(&self, id: Id) -> Option<Vec<(Id, Id)>> {
        match self.get(id)? {
            Obj::Dict(d) => Some(d.clone()),
            Obj::Call(c) if self.global(c.func) == Some(("collections", "OrderedDict")) => {
                let mut out = Vec::new();
                if let Some(&first) = self.tuple(c.args)?.first() {
                    for &pair in self.tuple(first)? {
                        match self.tuple(pair)? {
                            [k, v] => out.push((*k, *v)),
                            _ => return None,
                        }
                    }
                }
                out.extend_from_slice(&c.items);
                Some(out)
            }
            _ => None,
        }
    }

    /// The value of string key `key` in dict `id`.
    pub fn dict_get(&self, id: Id, key: &str) -> Option<Id> {
        self.dict_items(id)?
            .into_iter()
            .find(|&(k, _)| self.str(k) == Some(key))
            .map(|(_, v)| v)
    }

    /// A short description of an object, for error messages.
    pub fn describe(&self, id: Id) -> String {
        match self.get(id) {
            None => "nothing".into(),
            Some(Obj::None) => "None".into(),
            Some(Obj::Bool(b)) => format!("the bool {b}"),
            Some(Obj::Int(v)) => format!("the int {v}"),
            Some(Obj::BigInt(_)) => "a big int".into(),
            Some(Obj::Float(v)) => format!("the float {v}"),
            Some(Obj::Str(s)) => {
                let s: String = s.chars().take(40).collect();
                format!("the string {s:?}")
            }
            Some(Obj::Bytes(b)) => format!("{} bytes", b.len()),
            Some(Obj::Tuple(t)) => format!("a tuple of {}", t.len()),
            Some(Obj::List(l)) => format!("a list of {}", l.len()),
            Some(Obj::Dict(d)) => format!("a dict of {}", d.len()),
            Some(Obj::Set(s)) => format!("a set of {}", s.len()),
            Some(Obj::Global(g)) => format!("the global {}.{}", g.0, g.1),
            Some(Obj::Call(c)) => match self.global(c.func) {
                Some((m, n)) => format!("a {m}.{n}(...) object"),
                None => "an object".into(),
            },
            Some(Obj::PersId(_)) => "a persistent reference".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Result<Pickle, LoadError> {
        load_slice(bytes, Limits::default())
    }

    #[test]
    fn python_pickles() {
        // pickle.dumps({'a': [1, -2, 3.5, None, True], 'b': (b'xy', 'é')}, protocol=2)
        let p2 = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00N\x88eX\x01\x00\x00\x00bq\x03c_codecs\nencode\nq\x04X\x02\x00\x00\x00xyq\x05X\x06\x00\x00\x00latin1q\x06\x86q\x07Rq\x08X\x02\x00\x00\x00\xc3\xa9q\t\x86q\nu.";
        let p = run(p2).unwrap();
        let a = p.dict_get(p.root, "a").unwrap();
        let Some(Obj::List(items)) = p.get(a) else {
            panic!("not a list")
        };
        let vals: Vec<&Obj> = items.iter().map(|&i| p.get(i).unwrap()).collect();
        assert_eq!(
            vals,
            [
                &Obj::Int(1),
                &Obj::Int(-2),
                &Obj::Float(3.5),
                &Obj::None,
                &Obj::Bool(true)
            ]
        );
        let b = p.tuple(p.dict_get(p.root, "b").unwrap()).unwrap();
        assert_eq!(p.str(b[1]), Some("é"));
        assert_eq!(
            p.global(p.call(b[0]).unwrap().func),
            Some(("_codecs", "encode"))
        );
        assert_eq!(p.len, p2.len() as u64);

        // The same with protocol=5 (FRAME, SHORT_BINUNICODE, MEMOIZE, SHORT_BINBYTES).
        let p5 = b"\x80\x05\x95/\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94]\x94(K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00N\x88e\x8c\x01b\x94C\x02xy\x94\x8c\x02\xc3\xa9\x94\x86\x94u.";
        let p = run(p5).unwrap();
        let b = p.tuple(p.dict_get(p.root, "b").unwrap()).unwrap();
        assert_eq!(p.get(b[0]), Some(&Obj::Bytes(b"xy".to_vec().into())));
        assert_eq!(p.str(b[1]), Some("é"));

        // Protocol 0: pickle.dumps([12345678901, 'x\u20ac', 1.25], protocol=0)
        let p0 = b"(lp0\nL12345678901L\naVx\\u20ac\np1\naF1.25\na.";
        let p = run(p0).unwrap();
        let l = p.tuple(p.root).unwrap();
        assert_eq!(p.int(l[0]), Some(12_345_678_901));
        assert_eq!(p.str(l[1]), Some("x€"));
        assert_eq!(p.get(l[2]), Some(&Obj::Float(1.25)));
    }

    #[test]
    fn big_and_negative_longs() {
        // pickle.dumps(0x1950a86a20f9469cfc6c, 2) and pickle.dumps(-(2**63), 2)
        let p = run(b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.").unwrap();
        assert_eq!(
            p.get(p.root),
            Some(&Obj::BigInt(
                b"l\xfc\x9cF\xf9 j\xa8P\x19".to_vec().into_boxed_slice()
            ))
        );
        let p = run(b"\x80\x02\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80.").unwrap();
        assert_eq!(p.int(p.root), Some(i64::MIN));
        let p = run(b"\x80\x02\x8a\x01\xff.").unwrap();
        assert_eq!(p.int(p.root), Some(-1));
    }

    #[test]
    fn shared_and_mutated_through_the_memo() {
        // d = {}; l = [d, d]; d['k'] = 1 -> pickle.dumps(l, 2) memoizes d before filling it.
        let b = b"\x80\x02]q\x00(}q\x01X\x01\x00\x00\x00kq\x02K\x01sh\x01e.";
        let p = run(b).unwrap();
        let l = p.tuple(p.root).unwrap();
        assert_eq!(l[0], l[1]);
        assert_eq!(p.dict_get(l[0], "k").and_then(|v| p.int(v)), Some(1));
    }

    #[test]
    fn hostile_input_is_an_error() {
        let cases: &[&[u8]] = &[
            b"",
            b"\x80\x02",
            b"\x80\x02N",
            b".",
            b"\x80\x09N.",
            b"\x80\x02X\xff\xff\xff\xff", // 4 GB string in 7 bytes
            b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f", // 2^63-byte string
            b"\x80\x02\x8b\xff\xff\xff\x7f", // 2 GB integer
            b"\x80\x02h\x05.",            // memo miss
            b"\x80\x02t.",                // TUPLE without MARK
            b"\x80\x02Ns.",               // SETITEM on None
            b"\x80\x02N(.",               // STOP below a mark
            b"\x80\x02\x97.",             // NEXT_BUFFER
            b"\x80\x02\x82\x01.",         // EXT1
            b"\x80\x02\xff",              // unknown opcode
            b"\x80\x02X\x02\x00\x00\x00\xff\xfe.", // not UTF-8
            b"\x80\x02K\x01K\x02\x93.",   // STACK_GLOBAL on ints
        ];
        for &c in cases {
            assert!(run(c).is_err(), "{c:?} was accepted");
        }
        assert!(matches!(
            run(b"\x80\x02X\xff\xff\xff\xff").unwrap_err(),
            LoadError::Truncated(_)
        ));
    }

    #[test]
    fn limits_hold() {
        // 2 million DUPs of one object: the stack limit stops it.
        let mut b = b"\x80\x02N".to_vec();
        b.extend(std::iter::repeat_n(b'2', 2 << 20));
        b.push(b'.');
        let e = run(&b).unwrap_err();
        assert!(e.to_string().contains("stack deeper"), "{e}");

        let small = Limits {
            max_objects: 10,
            ..Limits::default()
        };
        let mut b = b"\x80\x02(".to_vec();
        b.extend(std::iter::repeat_n(b'N', 20));
        b.extend(b"l.");
        let e = load_slice(&b, small).unwrap_err();
        assert!(e.to_string().contains("objects"), "{e}");

        // Appending a list to itself through the memo cannot grow past max_items.
        let small = Limits {
            max_items: 1000,
            ..Limits::default()
        };
        let mut b = b"\x80\x02]q\x00N".to_vec();
        b.extend(b"a");
        for _ in 0..600 {
            b.extend(b"(h\x00h\x00e"); // l.extend([l, l])
        }
        b.push(b'.');
        assert!(load_slice(&b, Limits::default()).is_ok());
        let e = load_slice(&b, small).unwrap_err();
        assert!(e.to_string().contains("items"), "{e}");
    }
}
