//! The pickle machine: its stack, marks and memo, the bounds it keeps ([`Limits`]), and what
//! each opcode does. Calls and globals are recorded, never executed.

use std::collections::HashMap;

use super::opcode::Op;
use super::source::Source;
use super::text::{long, raw_unicode_escape, unquote};
use super::{Call, Id, Limits, Obj, malformed};
use crate::model::LoadError;

/// The pickle machine: a stack of object ids with marks, a memo, and the arena the ids index.
pub(super) struct Machine<'a> {
    pub(super) src: Source<'a>,
    pub(super) objs: Vec<Obj>,
    pub(super) stack: Vec<Id>,
    pub(super) marks: Vec<usize>,
    pub(super) memo: HashMap<u64, Id>,
    /// Ids held by containers.
    pub(super) items: usize,
    /// Bytes held by strings.
    pub(super) bytes: u64,
    pub(super) limits: Limits,
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

    /// Runs the opcodes up to `STOP`; returns the object `STOP` pops.
    pub(super) fn run(&mut self) -> Result<Id, LoadError> {
        loop {
            let byte = self.src.u8("opcode")?;
            let Some(op) = Op::from_byte(byte) else {
                return Err(malformed(format!(
                    "unknown opcode 0x{byte:02x} at byte {}",
                    self.src.pos - 1
                )));
            };
            let op_name = op.name();
            match op {
                Op::Proto => {
                    let p = self.src.u8(op_name)?;
                    if p > 5 {
                        return Err(malformed(format!("unsupported protocol {p}")));
                    }
                }
                // FRAME: a length hint; the data is read as a stream anyway.
                Op::Frame => {
                    let n = u64::from_le_bytes(self.src.array(op_name)?);
                    if n > self.src.left() {
                        return Err(self.src.truncated(op_name));
                    }
                }
                Op::Stop => {
                    let id = self.pop(op_name)?;
                    return Ok(id);
                }
                Op::Mark => {
                    if self.stack.len() + self.marks.len() >= self.limits.max_stack {
                        return Err(malformed("too many MARKs"));
                    }
                    self.marks.push(self.stack.len());
                }
                Op::Pop => {
                    // POP: a bare mark is popped too (Python pops the metastack then).
                    let floor = self.marks.last().copied().unwrap_or(0);
                    if self.stack.len() > floor {
                        self.stack.pop();
                    } else if self.marks.pop().is_none() {
                        return Err(malformed("POP on an empty stack"));
                    }
                }
                Op::PopMark => {
                    self.pop_mark(op_name)?;
                }
                Op::Dup => {
                    let id = self.top(op_name)?;
                    self.push_id(id)?;
                }
                // Scalars.
                Op::None => self.push(Obj::None)?,
                Op::NewTrue => self.push(Obj::Bool(true))?,
                Op::NewFalse => self.push(Obj::Bool(false))?,
                Op::Int => {
                    let l = self.line_str(op_name)?;
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
                Op::BinInt => {
                    let v = i32::from_le_bytes(self.src.array(op_name)?);
                    self.push(Obj::Int(v.into()))?;
                }
                Op::BinInt1 => {
                    let v = self.src.u8(op_name)?;
                    self.push(Obj::Int(v.into()))?;
                }
                Op::BinInt2 => {
                    let v = u16::from_le_bytes(self.src.array(op_name)?);
                    self.push(Obj::Int(v.into()))?;
                }
                Op::Long => {
                    let v = self.line_int(op_name)?;
                    self.push(Obj::Int(v))?;
                }
                Op::Long1 => {
                    let n = self.src.u8(op_name)?;
                    let b = self.payload(n.into(), op_name)?;
                    self.push(long(b))?;
                }
                Op::Long4 => {
                    let n = i32::from_le_bytes(self.src.array(op_name)?);
                    let n = u64::try_from(n).map_err(|_| malformed("LONG4 of negative length"))?;
                    let b = self.payload(n, op_name)?;
                    self.push(long(b))?;
                }
                Op::Float => {
                    let l = self.line_str(op_name)?;
                    let v = l
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| malformed(format!("FLOAT `{l}` is not a number")))?;
                    self.push(Obj::Float(v))?;
                }
                Op::BinFloat => {
                    let v = f64::from_be_bytes(self.src.array(op_name)?);
                    self.push(Obj::Float(v))?;
                }
                // Strings.
                Op::String => {
                    let l = self.src.line(op_name)?;
                    self.count_bytes(l.len() as u64)?;
                    let s = unquote(&l).ok_or_else(|| malformed("STRING is not quoted"))?;
                    self.push(Obj::Str(String::from_utf8_lossy(&s).into()))?;
                }
                Op::BinString => {
                    let n = i32::from_le_bytes(self.src.array(op_name)?);
                    let n =
                        u64::try_from(n).map_err(|_| malformed("BINSTRING of negative length"))?;
                    let b = self.payload(n, op_name)?;
                    self.push(Obj::Str(String::from_utf8_lossy(&b).into()))?;
                }
                Op::ShortBinString => {
                    let n = self.src.u8(op_name)?;
                    let b = self.payload(n.into(), op_name)?;
                    self.push(Obj::Str(String::from_utf8_lossy(&b).into()))?;
                }
                Op::Unicode => {
                    let l = self.src.line(op_name)?;
                    self.count_bytes(l.len() as u64)?;
                    let s =
                        raw_unicode_escape(&l).ok_or_else(|| malformed("bad UNICODE escape"))?;
                    self.push(Obj::Str(s.into_boxed_str()))?;
                }
                Op::BinUnicode => {
                    let n = u32::from_le_bytes(self.src.array(op_name)?);
                    let s = self.utf8(n.into(), op_name)?;
                    self.push(s)?;
                }
                Op::ShortBinUnicode => {
                    let n = self.src.u8(op_name)?;
                    let s = self.utf8(n.into(), op_name)?;
                    self.push(s)?;
                }
                Op::BinUnicode8 => {
                    let n = u64::from_le_bytes(self.src.array(op_name)?);
                    let s = self.utf8(n, op_name)?;
                    self.push(s)?;
                }
                Op::BinBytes => {
                    let n = u32::from_le_bytes(self.src.array(op_name)?);
                    let b = self.payload(n.into(), op_name)?;
                    self.push(Obj::Bytes(b.into_boxed_slice()))?;
                }
                Op::ShortBinBytes => {
                    let n = self.src.u8(op_name)?;
                    let b = self.payload(n.into(), op_name)?;
                    self.push(Obj::Bytes(b.into_boxed_slice()))?;
                }
                Op::BinBytes8 | Op::ByteArray8 => {
                    let n = u64::from_le_bytes(self.src.array(op_name)?);
                    let b = self.payload(n, op_name)?;
                    self.push(Obj::Bytes(b.into_boxed_slice()))?;
                }
                Op::NextBuffer => {
                    return Err(malformed(
                        "out-of-band buffers (NEXT_BUFFER) are not supported",
                    ));
                }
                Op::ReadonlyBuffer => {
                    self.top(op_name)?;
                }
                // Tuples.
                Op::EmptyTuple => self.tuple(Vec::new())?,
                Op::Tuple => {
                    let items = self.pop_mark(op_name)?;
                    self.tuple(items)?;
                }
                Op::Tuple1 | Op::Tuple2 | Op::Tuple3 => {
                    let n = usize::from(op as u8 - Op::Tuple1 as u8 + 1);
                    let mut items = vec![0; n];
                    for slot in items.iter_mut().rev() {
                        *slot = self.pop(op_name)?;
                    }
                    self.tuple(items)?;
                }
                // Lists.
                Op::EmptyList => self.push(Obj::List(Vec::new()))?,
                Op::List => {
                    let items = self.pop_mark(op_name)?;
                    self.count_items(items.len())?;
                    self.push(Obj::List(items))?;
                }
                Op::Append => {
                    let v = self.pop(op_name)?;
                    let target = self.top(op_name)?;
                    self.append(target, vec![v], op_name)?;
                }
                Op::Appends => {
                    let items = self.pop_mark(op_name)?;
                    let target = self.top(op_name)?;
                    self.append(target, items, op_name)?;
                }
                // Dicts.
                Op::EmptyDict => self.push(Obj::Dict(Vec::new()))?,
                Op::Dict => {
                    let items = self.pop_mark(op_name)?;
                    if !items.len().is_multiple_of(2) {
                        return Err(malformed("DICT with an odd number of items"));
                    }
                    self.count_items(items.len())?;
                    let kvs = items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect();
                    self.push(Obj::Dict(kvs))?;
                }
                Op::SetItem => {
                    let v = self.pop(op_name)?;
                    let k = self.pop(op_name)?;
                    let target = self.top(op_name)?;
                    self.set_items(target, vec![k, v], op_name)?;
                }
                Op::SetItems => {
                    let items = self.pop_mark(op_name)?;
                    let target = self.top(op_name)?;
                    self.set_items(target, items, op_name)?;
                }
                // Sets.
                Op::EmptySet => self.push(Obj::Set(Vec::new()))?,
                Op::AddItems => {
                    let items = self.pop_mark(op_name)?;
                    let target = self.top(op_name)?;
                    self.append(target, items, op_name)?;
                }
                Op::FrozenSet => {
                    let items = self.pop_mark(op_name)?;
                    self.count_items(items.len())?;
                    self.push(Obj::Set(items))?;
                }
                // Memo.
                Op::Get => {
                    let k = self.memo_key(op_name)?;
                    self.memo_get(k)?;
                }
                Op::BinGet => {
                    let k = self.src.u8(op_name)?;
                    self.memo_get(k.into())?;
                }
                Op::LongBinGet => {
                    let k = u32::from_le_bytes(self.src.array(op_name)?);
                    self.memo_get(k.into())?;
                }
                Op::Put => {
                    let k = self.memo_key(op_name)?;
                    self.memo_put(k)?;
                }
                Op::BinPut => {
                    let k = self.src.u8(op_name)?;
                    self.memo_put(k.into())?;
                }
                Op::LongBinPut => {
                    let k = u32::from_le_bytes(self.src.array(op_name)?);
                    self.memo_put(k.into())?;
                }
                Op::Memoize => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                // Globals and calls: recorded, never executed.
                Op::Global => {
                    let module = self.line_str("GLOBAL module")?;
                    let name = self.line_str("GLOBAL name")?;
                    let id = self.global(module, name)?;
                    self.push_id(id)?;
                }
                Op::StackGlobal => {
                    let name = self.pop(op_name)?;
                    let module = self.pop(op_name)?;
                    let (Some(Obj::Str(m)), Some(Obj::Str(n))) =
                        (self.objs.get(module as usize), self.objs.get(name as usize))
                    else {
                        return Err(malformed("STACK_GLOBAL on something not two strings"));
                    };
                    let (m, n) = (m.to_string(), n.to_string());
                    let id = self.global(m, n)?;
                    self.push_id(id)?;
                }
                Op::Reduce => {
                    let args = self.pop(op_name)?;
                    let func = self.pop(op_name)?;
                    self.call(func, args, None)?;
                }
                Op::NewObj => {
                    let args = self.pop(op_name)?;
                    let cls = self.pop(op_name)?;
                    self.call(cls, args, None)?;
                }
                Op::NewObjEx => {
                    let kwargs = self.pop(op_name)?;
                    let args = self.pop(op_name)?;
                    let cls = self.pop(op_name)?;
                    self.call(cls, args, Some(kwargs))?;
                }
                Op::Inst => {
                    let module = self.line_str("INST module")?;
                    let name = self.line_str("INST name")?;
                    let args = self.pop_mark(op_name)?;
                    let cls = self.global(module, name)?;
                    self.tuple(args)?;
                    let args = self.pop(op_name)?;
                    self.call(cls, args, None)?;
                }
                Op::Obj => {
                    let mut items = self.pop_mark(op_name)?;
                    if items.is_empty() {
                        return Err(malformed("OBJ without a class"));
                    }
                    let cls = items.remove(0);
                    self.tuple(items)?;
                    let args = self.pop(op_name)?;
                    self.call(cls, args, None)?;
                }
                Op::Build => {
                    let state = self.pop(op_name)?;
                    let target = self.top(op_name)?;
                    // Only recorded calls keep a state; other objects ignore it.
                    if let Some(Obj::Call(c)) = self.objs.get_mut(target as usize) {
                        c.state = Some(state);
                    }
                }
                Op::PersId => {
                    let pid = self.src.line(op_name)?;
                    self.count_bytes(pid.len() as u64)?;
                    let s = String::from_utf8_lossy(&pid).into_owned();
                    let key = self.new_obj(Obj::Str(s.into_boxed_str()))?;
                    self.push(Obj::PersId(key))?;
                }
                Op::BinPersId => {
                    let key = self.pop(op_name)?;
                    self.push(Obj::PersId(key))?;
                }
                Op::Ext1 | Op::Ext2 | Op::Ext4 => {
                    return Err(malformed(
                        "extension registry opcodes (EXT1/EXT2/EXT4) are not supported",
                    ));
                }
            }
        }
    }
}
