//! A small, safe reader of Python pickles (protocols 0 to 5), for the index of `torch.save` files.
//!
//! Nothing is executed: `GLOBAL`/`STACK_GLOBAL` give an inert [`Obj::Global`] naming the
//! callable; `REDUCE`, `NEWOBJ`, `INST`, `OBJ` give an [`Obj::Call`] that records the callable
//! and its arguments; `BUILD`, `SETITEMS` and `APPENDS` on such a call record the state and the
//! items. Persistent ids (`PERSID`, `BINPERSID`) give [`Obj::PersId`]. The caller interprets
//! what it recognises (see `pytorch/tensors.rs`).
//!
//! Objects live in an arena ([`Pickle::objs`]) and refer to each other by index, so sharing
//! through the memo costs nothing and mutation (`SETITEMS` after `BINPUT`) is seen by every
//! reference, as in Python. Hostile input is bounded: every length the file claims is checked
//! against the bytes left before anything is allocated, and the object count, stack depth, memo
//! size and total string size have limits ([`Limits`]). The machine is a loop, not a recursion.
//!
//! The parts: `opcode.rs` names the opcodes, `source.rs` bounds the input, `machine.rs` runs
//! the opcodes, `text.rs` decodes protocol 0's text arguments and big integers.

mod machine;
mod opcode;
mod source;
#[cfg(test)]
mod tests;
mod text;

use std::collections::HashMap;
use std::io::Read;

use crate::model::LoadError;
use machine::Machine;
use source::Source;

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
