//! A small, strict reader for the Python pickle subset that PyTorch's legacy (pre-1.6,
//! non-zip) checkpoints use (protocol 2): enough to rebuild an `OrderedDict` of tensors
//! without Python or torch. It runs the pickle machine over the opcodes listed in
//! [`Machine::step`]; any other opcode, or a call of anything but `collections.OrderedDict`
//! and `torch._utils._rebuild_tensor_v2`, is an error (pickles are programs: nothing is
//! executed that is not known to be a pure data constructor).

use crate::base::error::{Error, Result};

/// A value on the pickle stack.
#[derive(Clone, Debug, PartialEq)]
pub enum PyValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<PyValue>),
    List(Vec<PyValue>),
    /// Insertion-ordered dict (also `collections.OrderedDict`).
    Dict(Vec<(PyValue, PyValue)>),
    /// A `module.name` reference from GLOBAL.
    Global(String, String),
    /// A persistent id (BINPERSID): for torch, `('storage', StorageClass, key, location, numel, view)`.
    PersId(Box<PyValue>),
    /// A tensor view over a storage: `_rebuild_tensor_v2(storage, offset, size, stride, ..)`.
    Tensor {
        storage: Box<PyValue>,
        offset: usize,
        size: Vec<usize>,
        stride: Vec<usize>,
    },
}

enum Item {
    Mark,
    Value(PyValue),
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Item>,
    memo: std::collections::HashMap<u32, PyValue>,
    origin: &'a str,
}

/// Reads one pickle starting at `data[start..]`; returns the value and the position after STOP.
pub fn read_pickle(data: &[u8], start: usize, origin: &str) -> Result<(PyValue, usize)> {
    let mut m = Machine { data, pos: start, stack: vec![], memo: Default::default(), origin };
    loop {
        if let Some(v) = m.step()? {
            return Ok((v, m.pos));
        }
    }
}

impl Machine<'_> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::parse(self.origin, format!("pickle at byte {}: {msg}", self.pos))
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| self.err("truncated"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos.min(self.data.len())..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| self.err("unterminated line"))?;
        let s = String::from_utf8(rest[..n].to_vec()).map_err(|_| self.err("line is not UTF-8"))?;
        self.pos += n + 1;
        Ok(s)
    }
    fn string(&mut self, n: usize) -> Result<String> {
        let b = self.take(n)?.to_vec();
        String::from_utf8(b).map_err(|_| self.err("string is not UTF-8"))
    }

    fn push(&mut self, v: PyValue) {
        self.stack.push(Item::Value(v));
    }
    fn pop(&mut self) -> Result<PyValue> {
        match self.stack.pop() {
            Some(Item::Value(v)) => Ok(v),
            Some(Item::Mark) => Err(self.err("unexpected mark")),
            None => Err(self.err("stack underflow")),
        }
    }
    /// Pops everything down to the topmost mark.
    fn pop_mark(&mut self) -> Result<Vec<PyValue>> {
        let at = self.stack.iter().rposition(|i| matches!(i, Item::Mark)).ok_or_else(|| self.err("no mark"))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items.into_iter().filter_map(|i| if let Item::Value(v) = i { Some(v) } else { None }).collect())
    }
    fn top_mut(&mut self) -> Result<&mut PyValue> {
        let e = self.err("stack underflow");
        match self.stack.last_mut() {
            Some(Item::Value(v)) => Ok(v),
            _ => Err(e),
        }
    }
    fn memo_get(&self, k: u32) -> Result<PyValue> {
        self.memo.get(&k).cloned().ok_or_else(|| self.err(format!("memo key {k} not set")))
    }
    fn memo_put(&mut self, k: u32) -> Result<()> {
        let v = match self.stack.last() {
            Some(Item::Value(v)) => v.clone(),
            _ => return Err(self.err("nothing to memoize")),
        };
        self.memo.insert(k, v);
        Ok(())
    }

    fn set_items(&mut self, pairs: Vec<PyValue>) -> Result<()> {
        if !pairs.len().is_multiple_of(2) {
            return Err(self.err("odd number of dict items"));
        }
        let e = self.err("SETITEM(S) target is not a dict");
        let PyValue::Dict(d) = self.top_mut()? else { return Err(e) };
        let mut it = pairs.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            match d.iter_mut().find(|(ek, _)| *ek == k) {
                Some(slot) => slot.1 = v,
                None => d.push((k, v)),
            }
        }
        Ok(())
    }

    fn reduce(&mut self, callable: PyValue, args: PyValue) -> Result<PyValue> {
        let PyValue::Global(module, name) = &callable else { return Err(self.err("REDUCE of a non-global")) };
        let PyValue::Tuple(args) = args else { return Err(self.err("REDUCE arguments are not a tuple")) };
        match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") if args.is_empty() => Ok(PyValue::Dict(vec![])),
            ("torch._utils", "_rebuild_tensor_v2") if args.len() >= 4 => {
                let ints = |v: &PyValue| -> Result<Vec<usize>> {
                    match v {
                        PyValue::Tuple(t) => t
                            .iter()
                            .map(|x| match x {
                                PyValue::Int(i) if *i >= 0 => Ok(*i as usize),
                                _ => Err(self.err("tensor size/stride must be non-negative ints")),
                            })
                            .collect(),
                        _ => Err(self.err("tensor size/stride must be tuples")),
                    }
                };
                let offset = match &args[1] {
                    PyValue::Int(i) if *i >= 0 => *i as usize,
                    _ => return Err(self.err("tensor storage offset must be a non-negative int")),
                };
                Ok(PyValue::Tensor {
                    storage: Box::new(args[0].clone()),
                    offset,
                    size: ints(&args[2])?,
                    stride: ints(&args[3])?,
                })
            }
            _ => Err(self.err(format!("refusing to call {module}.{name}: not a known data constructor"))),
        }
    }

    /// Executes one opcode; returns the result at STOP.
    fn step(&mut self) -> Result<Option<PyValue>> {
        let op = self.u8()?;
        match op {
            0x80 => {
                let proto = self.u8()?; // PROTO
                if proto > 2 {
                    return Err(self.err(format!("pickle protocol {proto} not supported (legacy torch files use 2)")));
                }
            }
            b'.' => return self.pop().map(Some), // STOP
            b'(' => self.stack.push(Item::Mark),
            b'N' => self.push(PyValue::None),
            0x88 => self.push(PyValue::Bool(true)),
            0x89 => self.push(PyValue::Bool(false)),
            b'J' => {
                let v = self.u32()? as i32 as i64; // BININT
                self.push(PyValue::Int(v));
            }
            b'K' => {
                let v = self.u8()? as i64; // BININT1
                self.push(PyValue::Int(v));
            }
            b'M' => {
                let v = self.u16()? as i64; // BININT2
                self.push(PyValue::Int(v));
            }
            0x8a => {
                // LONG1: little-endian two's complement of n bytes
                let n = self.u8()? as usize;
                let b = self.take(n)?.to_vec();
                if n > 8 {
                    // Only the checkpoint's magic number is this long; keep it as a string of hex.
                    self.push(PyValue::Str(b.iter().rev().map(|x| format!("{x:02x}")).collect()));
                } else {
                    let mut v: i64 = 0;
                    for (i, &x) in b.iter().enumerate() {
                        v |= (x as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(PyValue::Int(v));
                }
            }
            b'G' => {
                let b = self.take(8)?; // BINFLOAT (big-endian)
                let v = f64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                self.push(PyValue::Float(v));
            }
            b'X' => {
                let n = self.u32()? as usize; // BINUNICODE
                let s = self.string(n)?;
                self.push(PyValue::Str(s));
            }
            0x8c => {
                let n = self.u8()? as usize; // SHORT_BINUNICODE
                let s = self.string(n)?;
                self.push(PyValue::Str(s));
            }
            b'c' => {
                let module = self.line()?; // GLOBAL
                let name = self.line()?;
                self.push(PyValue::Global(module, name));
            }
            b')' => self.push(PyValue::Tuple(vec![])),
            b']' => self.push(PyValue::List(vec![])),
            b'}' => self.push(PyValue::Dict(vec![])),
            b't' => {
                let items = self.pop_mark()?; // TUPLE
                self.push(PyValue::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize; // TUPLE1..3
                let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>>>()?;
                items.reverse();
                self.push(PyValue::Tuple(items));
            }
            b'l' => {
                let items = self.pop_mark()?; // LIST
                self.push(PyValue::List(items));
            }
            b'a' => {
                let v = self.pop()?; // APPEND
                let e = self.err("APPEND target is not a list");
                let PyValue::List(l) = self.top_mut()? else { return Err(e) };
                l.push(v);
            }
            b'e' => {
                let items = self.pop_mark()?; // APPENDS
                let e = self.err("APPENDS target is not a list");
                let PyValue::List(l) = self.top_mut()? else { return Err(e) };
                l.extend(items);
            }
            b's' => {
                let v = self.pop()?; // SETITEM
                let k = self.pop()?;
                self.set_items(vec![k, v])?;
            }
            b'u' => {
                let items = self.pop_mark()?; // SETITEMS
                self.set_items(items)?;
            }
            b'q' => {
                let k = self.u8()? as u32; // BINPUT
                self.memo_put(k)?;
            }
            b'r' => {
                let k = self.u32()?; // LONG_BINPUT
                self.memo_put(k)?;
            }
            b'h' => {
                let k = self.u8()? as u32; // BINGET
                let v = self.memo_get(k)?;
                self.push(v);
            }
            b'j' => {
                let k = self.u32()?; // LONG_BINGET
                let v = self.memo_get(k)?;
                self.push(v);
            }
            b'Q' => {
                let pid = self.pop()?; // BINPERSID
                self.push(PyValue::PersId(Box::new(pid)));
            }
            b'R' => {
                let args = self.pop()?; // REDUCE
                let callable = self.pop()?;
                let v = self.reduce(callable, args)?;
                self.push(v);
            }
            b'b' => {
                // BUILD: sets state on the object below; an OrderedDict's state is its
                // `_metadata`, which the weights do not need.
                self.pop()?;
            }
            other => return Err(self.err(format!("unsupported pickle opcode 0x{other:02x}"))),
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ordered_dict_and_refuses_unknown_calls() {
        // Protocol-2 pickle of OrderedDict([('a', (1, -2, 'x'))]) built by hand.
        let mut p = vec![0x80, 2];
        p.extend(
            b"ccollections\nOrderedDict\nq\x00)R(X\x01\x00\x00\x00aK\x01J\xfe\xff\xff\xffX\x01\x00\x00\x00x\x87u.",
        );
        let (v, end) = read_pickle(&p, 0, "t").unwrap();
        assert_eq!(end, p.len());
        assert_eq!(
            v,
            PyValue::Dict(vec![(
                PyValue::Str("a".into()),
                PyValue::Tuple(vec![PyValue::Int(1), PyValue::Int(-2), PyValue::Str("x".into())])
            )])
        );
        let evil = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.";
        let e = read_pickle(evil, 0, "evil.pth").unwrap_err().to_string();
        assert!(e.contains("refusing to call os.system"), "{e}");
        let e = read_pickle(&p[..p.len() - 5], 0, "cut.pth").unwrap_err().to_string();
        assert!(e.contains("cut.pth") && e.contains("truncated"), "{e}");
    }
}
