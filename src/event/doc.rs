//! An event's decoded JSON as a flat tape: every value is one [`Node`] in
//! document order, a container followed by its contents (an object's
//! members as name, value, name, value, ...). Strings are ranges of the
//! document's text: the input itself where the JSON string has no escape,
//! an unescaped copy after it otherwise.
//!
//! One event is three allocations (the nodes, the text and the `Arc` around
//! the event) instead of a tree of maps and strings, so decoding, holding
//! and freeing events cost a fraction of `serde_json::Value`. The engine
//! reads fields through [`NodeRef`]; a `serde_json::Value` is built only
//! where a whole value is needed (templates, `string(object)`).
//!
//! Invariant: the tape is what `serde_json::Value`'s deserializer reads from
//! the same text: [`NodeRef::to_value`] gives exactly that `Value` (numbers,
//! member order; a repeated member name keeps its first place and its last
//! value), and [`NodeRef::get`] finds the member that `Value` would hold.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use super::json;

/// One value of the tape. Offsets and lengths are `u32`: a document is
/// at most 4 GiB (events are far smaller; larger input is rejected).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    /// A non-negative integer, as serde_json keeps it.
    PosInt(u64),
    /// A negative integer.
    NegInt(i64),
    Float(f64),
    /// A string (or a member name): `len` bytes of the text from `at`.
    Str {
        at: u32,
        len: u32,
    },
    /// `len` elements follow; the node after the last is at `end`.
    Array {
        len: u32,
        end: u32,
    },
    /// `len` members (name node, then value) follow; the next node after
    /// them is at `end`. `unique`: no member name repeats.
    Object {
        len: u32,
        end: u32,
        unique: bool,
    },
}

/// A decoded JSON document: the tape and its text. The first `input` bytes
/// of the text are the input as given; unescaped strings follow.
#[derive(Clone, PartialEq)]
pub struct Doc {
    nodes: Box<[Node]>,
    text: Box<str>,
    input: u32,
}

impl fmt::Debug for Doc {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_tuple("Doc").field(&self.input()).finish()
    }
}

/// Why a text is not a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocError {
    /// Not JSON (or deeper than serde_json's limit of 128, or a number
    /// beyond `f64`).
    Invalid,
    /// Longer than 4 GiB.
    TooLong,
}

impl Doc {
    /// Parses `input` (one JSON value; white space around it is allowed).
    pub fn parse(input: &str) -> Result<Doc, DocError> {
        let input_len = u32::try_from(input.len()).map_err(|_| DocError::TooLong)?;
        // The tape is built in a per-thread scratch vector and copied out at
        // its exact size: one allocation per document, no regrowth, and no
        // shrinking reallocation that would leave a hole behind.
        SCRATCH.with(|scratch| {
            let mut nodes = scratch.take();
            nodes.clear();
            let mut tape = Tape {
                input,
                nodes,
                extra: String::new(),
            };
            let mut de = serde_json::Deserializer::from_str(input);
            let parsed = NodeSeed(&mut tape)
                .deserialize(&mut de)
                .and_then(|()| de.end());
            let doc = match parsed {
                Err(_) => Err(DocError::Invalid),
                Ok(()) if input.len() + tape.extra.len() > u32::MAX as usize => {
                    Err(DocError::TooLong)
                }
                Ok(()) => Ok(Doc {
                    nodes: Box::from(tape.nodes.as_slice()),
                    text: if tape.extra.is_empty() {
                        Box::from(input)
                    } else {
                        let mut t = String::with_capacity(input.len() + tape.extra.len());
                        t.push_str(input);
                        t.push_str(&tape.extra);
                        t.into_boxed_str()
                    },
                    input: input_len,
                }),
            };
            // A huge document does not leave a huge scratch behind.
            let mut nodes = tape.nodes;
            if nodes.capacity() > SCRATCH_KEEP {
                nodes = Vec::new();
            }
            scratch.set(nodes);
            doc
        })
    }

    /// Asks the CPU to bring the first cache lines of the tape and of the
    /// text into its cache, ahead of their use: the engine evaluates an
    /// event long after a source thread decoded it (`max_delay` later).
    pub fn prefetch(&self) {
        super::prefetch(&self.nodes);
        super::prefetch(self.text.as_bytes());
    }

    /// The text the document was parsed from.
    pub fn input(&self) -> &str {
        &self.text[..self.input as usize]
    }

    /// The top-level value.
    pub fn root(&self) -> NodeRef<'_> {
        NodeRef { doc: self, at: 0 }
    }
}

thread_local! {
    /// Nodes of the tape being built on this thread ([`Doc::parse`]).
    static SCRATCH: std::cell::Cell<Vec<Node>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Scratch capacity kept between documents (64 KiB of nodes).
const SCRATCH_KEEP: usize = 4096;

/// A value inside a [`Doc`].
#[derive(Clone, Copy)]
pub struct NodeRef<'a> {
    doc: &'a Doc,
    at: u32,
}

impl fmt::Debug for NodeRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", json::compact(&self.to_value()))
    }
}

impl<'a> NodeRef<'a> {
    pub fn node(&self) -> Node {
        self.doc.nodes[self.at as usize]
    }

    fn text(&self, at: u32, len: u32) -> &'a str {
        &self.doc.text[at as usize..(at + len) as usize]
    }

    /// The node after this value and everything inside it.
    fn next(&self) -> u32 {
        skip(&self.doc.nodes, self.at as usize) as u32
    }

    pub fn as_str(&self) -> Option<&'a str> {
        match self.node() {
            Node::Str { at, len } => Some(self.text(at, len)),
            _ => None,
        }
    }

    /// A number as `f64` (as `serde_json::Number::as_f64`).
    pub fn as_f64(&self) -> Option<f64> {
        match self.node() {
            Node::PosInt(n) => Some(n as f64),
            Node::NegInt(n) => Some(n as f64),
            Node::Float(x) => Some(x),
            _ => None,
        }
    }

    /// An object's members in input order (repeated names included).
    pub fn members(&self) -> impl Iterator<Item = (&'a str, NodeRef<'a>)> + use<'a> {
        let (doc, len, mut at) = match self.node() {
            Node::Object { len, .. } => (self.doc, len, self.at + 1),
            _ => (self.doc, 0, 0),
        };
        (0..len).map(move |_| {
            let name = NodeRef { doc, at };
            let value = NodeRef { doc, at: at + 1 };
            at = value.next();
            (name.as_str().unwrap_or_default(), value)
        })
    }

    /// An array's elements.
    pub fn elements(&self) -> impl Iterator<Item = NodeRef<'a>> + use<'a> {
        let (doc, len, mut at) = match self.node() {
            Node::Array { len, .. } => (self.doc, len, self.at + 1),
            _ => (self.doc, 0, 0),
        };
        (0..len).map(move |_| {
            let item = NodeRef { doc, at };
            at = item.next();
            item
        })
    }

    /// An object's member; of repeated names, the last (as in `Value`).
    /// Walks the tape directly: a name of another length costs one load.
    pub fn get(&self, name: &str) -> Option<NodeRef<'a>> {
        let Node::Object { len, unique, .. } = self.node() else {
            return None;
        };
        let (nodes, text) = (&self.doc.nodes, self.doc.text.as_bytes());
        let mut at = self.at as usize + 1;
        let mut found = None;
        for _ in 0..len {
            if let Node::Str { at: s, len: l } = nodes[at]
                && l as usize == name.len()
                && text.get(s as usize..(s + l) as usize) == Some(name.as_bytes())
            {
                found = Some(NodeRef {
                    doc: self.doc,
                    at: at as u32 + 1,
                });
                if unique {
                    break;
                }
            }
            at = skip(nodes, at + 1);
        }
        found
    }

    /// An array's element.
    pub fn index(&self, i: usize) -> Option<NodeRef<'a>> {
        match self.node() {
            Node::Array { len, .. } if i < len as usize => self.elements().nth(i),
            _ => None,
        }
    }

    /// The value as serde_json builds it from the same text.
    pub fn to_value(&self) -> Value {
        match self.node() {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::PosInt(n) => Value::Number(n.into()),
            Node::NegInt(n) => Value::Number(n.into()),
            Node::Float(x) => Number::from_f64(x).map_or(Value::Null, Value::Number),
            Node::Str { at, len } => Value::String(self.text(at, len).to_owned()),
            Node::Array { len, .. } => {
                let mut items = Vec::with_capacity(len as usize);
                items.extend(self.elements().map(|e| e.to_value()));
                Value::Array(items)
            }
            Node::Object { len, .. } => {
                let mut map = serde_json::Map::with_capacity(len as usize);
                for (name, v) in self.members() {
                    map.insert(name.to_owned(), v.to_value());
                }
                Value::Object(map)
            }
        }
    }

    /// Appends the value as compact JSON, as [`json::write_compact`] writes
    /// its `Value`.
    pub fn write_compact(&self, out: &mut String) {
        match self.node() {
            Node::Null => out.push_str("null"),
            Node::Bool(true) => out.push_str("true"),
            Node::Bool(false) => out.push_str("false"),
            Node::Str { at, len } => json::write_string(out, self.text(at, len)),
            Node::PosInt(_) | Node::NegInt(_) | Node::Float(_) => {
                json::write_number(out, self.as_f64().unwrap_or(f64::NAN));
            }
            // Repeated names collapse as in `Value`: build it (rare).
            Node::Object { .. } | Node::Array { .. } => json::write_compact(out, &self.to_value()),
        }
    }
}

/// The index of the node after the value at `at` and everything inside it
/// (a container knows where it ends).
fn skip(nodes: &[Node], at: usize) -> usize {
    match nodes[at] {
        Node::Array { end, .. } | Node::Object { end, .. } => end as usize,
        _ => at + 1,
    }
}

/// The tape being built.
struct Tape<'i> {
    /// The text being parsed: a borrowed string's offset is its address
    /// minus the input's.
    input: &'i str,
    nodes: Vec<Node>,
    /// Unescaped strings, placed after the input in the document's text.
    extra: String,
}

impl Tape<'_> {
    fn borrowed(&mut self, s: &str) -> Node {
        let at = (s.as_ptr() as usize).wrapping_sub(self.input.as_ptr() as usize);
        let n = self.input.len();
        if at <= n && s.len() <= n - at {
            // Inside the input (lengths are checked against u32 at the end).
            Node::Str {
                at: at as u32,
                len: s.len() as u32,
            }
        } else {
            self.copied(s)
        }
    }

    /// Pushes a string node: `borrowed` when `s` may lie in the input
    /// (serde_json's borrowed strings), copied after it otherwise.
    fn push_str(&mut self, s: &str, borrowed: bool) {
        let n = if borrowed {
            self.borrowed(s)
        } else {
            self.copied(s)
        };
        self.nodes.push(n);
    }

    fn copied(&mut self, s: &str) -> Node {
        let at = self.input.len() + self.extra.len();
        self.extra.push_str(s);
        Node::Str {
            at: u32::try_from(at).unwrap_or(u32::MAX),
            len: u32::try_from(s.len()).unwrap_or(u32::MAX),
        }
    }

    /// The bytes of the string node at `at` (empty for any other node).
    fn name(&self, at: usize) -> &[u8] {
        let Node::Str { at: start, len } = self.nodes[at] else {
            return &[];
        };
        let (start, len) = (start as usize, len as usize);
        let (text, start) = match start.checked_sub(self.input.len()) {
            Some(e) => (self.extra.as_bytes(), e),
            None => (self.input.as_bytes(), start),
        };
        text.get(start..start + len).unwrap_or_default()
    }

    /// A 6-bit hash of a member name, to spot names that may repeat.
    fn name_bit(&self, at: usize) -> u64 {
        let b = self.name(at);
        let first = u32::from(b.first().copied().unwrap_or(0));
        let last = u32::from(b.last().copied().unwrap_or(0));
        let h = (b.len() as u32).wrapping_mul(131) ^ first.wrapping_mul(31) ^ last.wrapping_mul(7);
        1 << (h & 63)
    }

    /// Whether the name at `name_at` repeats a name before it in the object
    /// whose node is at `object`.
    fn repeats(&self, object: usize, name_at: usize) -> bool {
        let mut i = object + 1;
        while i < name_at {
            if self.name(i) == self.name(name_at) {
                return true;
            }
            i = skip(&self.nodes, i + 1);
        }
        false
    }

    fn here(&self) -> u32 {
        u32::try_from(self.nodes.len()).unwrap_or(u32::MAX)
    }
}

/// Deserializes one value onto the tape.
struct NodeSeed<'t, 'i>(&'t mut Tape<'i>);

impl<'de> DeserializeSeed<'de> for NodeSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// Deserializes a member name onto the tape.
struct NameSeed<'t, 'i>(&'t mut Tape<'i>);

impl<'de> DeserializeSeed<'de> for NameSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // A name is a string: the value visitor takes it.
        d.deserialize_str(NodeSeed(self.0))
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.0.nodes.push(Node::Bool(v));
        Ok(())
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        // serde_json hands non-negative integers to `visit_u64`.
        self.0.nodes.push(if v < 0 {
            Node::NegInt(v)
        } else {
            Node::PosInt(v as u64)
        });
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.0.nodes.push(Node::PosInt(v));
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // serde_json gives only finite doubles; `Value` would hold null.
        self.0.nodes.push(if v.is_finite() {
            Node::Float(v)
        } else {
            Node::Null
        });
        Ok(())
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.0.push_str(v, true);
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.0.push_str(v, false);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.nodes.push(Node::Null);
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        self.0.nodes.push(Node::Null);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let tape = self.0;
        let at = tape.nodes.len();
        tape.nodes.push(Node::Array { len: 0, end: 0 });
        let mut len = 0u32;
        while seq.next_element_seed(NodeSeed(tape))?.is_some() {
            len += 1;
        }
        let end = tape.here();
        tape.nodes[at] = Node::Array { len, end };
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let tape = self.0;
        let at = tape.nodes.len();
        tape.nodes.push(Node::Object {
            len: 0,
            end: 0,
            unique: true,
        });
        let mut len = 0u32;
        // A bit per name hash: only a name whose bit is taken is compared
        // with the names before it.
        let (mut seen, mut unique) = (0u64, true);
        while map.next_key_seed(NameSeed(tape))?.is_some() {
            if unique {
                let name_at = tape.nodes.len() - 1;
                let bit = tape.name_bit(name_at);
                unique = seen & bit == 0 || !tape.repeats(at, name_at);
                seen |= bit;
            }
            map.next_value_seed(NodeSeed(tape))?;
            len += 1;
        }
        let end = tape.here();
        tape.nodes[at] = Node::Object { len, end, unique };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same_as_serde_json(text: &str) {
        let ours = Doc::parse(text).map(|d| d.root().to_value());
        let theirs = serde_json::from_str::<Value>(text);
        match (ours, theirs) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "{text}");
                assert_eq!(
                    serde_json::to_string(&a).ok(),
                    serde_json::to_string(&b).ok(),
                    "{text}"
                );
            }
            (Err(_), Err(_)) => {}
            (a, b) => panic!("{text}: ours {a:?}, serde_json {b:?}"),
        }
    }

    /// The tape holds exactly what `serde_json::Value` holds, and fails
    /// where it fails.
    #[test]
    fn tape_equals_serde_json_value() {
        let texts = [
            r#"{"type":"a","ts":1,"n":-0.0,"big":18446744073709551615,"neg":-9223372036854775808,"f":1.5e-7,"e":1E400}"#,
            r#"{"type":"a","ts":1,"n":1,"n":2,"m":{"b":1,"a":[1,{"z":null,"y":true}],"b":3},"s":"\u00e9\n\ud83d\ude00"}"#,
            r#"{"z":1,"y":2,"x":3,"w":4,"v":5,"u":6,"t":7,"s":8,"r":9,"q":10,"p":11,"o":12,"n":13,"z":0}"#,
            r#"{"a\"b":"c\\d","a\"b":{"x":"\u0041"},"e":[]}"#,
            r#"[1,2,{"a":[]},[],{}]"#,
            r#""just a string""#,
            r#"  {"a":1}  "#,
            r#"{"a":1,}"#,
            r#"{"a":1"#,
            r#"{"a":1} x"#,
            r#"{"a":NaN}"#,
            "",
        ];
        for t in texts {
            same_as_serde_json(t);
        }
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(Doc::parse(&deep), Err(DocError::Invalid), "depth limit");
    }

    #[test]
    fn members_find_the_last_of_repeated_names() {
        let d = Doc::parse(r#"{"n":1,"m":{"k":"x","k":"y"},"n":2,"a":[10,[20,21],{"q":true}]}"#)
            .expect("parses");
        let r = d.root();
        assert_eq!(r.get("n").and_then(|n| n.as_f64()), Some(2.0));
        assert_eq!(
            r.get("m").and_then(|m| m.get("k")).and_then(|k| k.as_str()),
            Some("y")
        );
        assert!(r.get("missing").is_none());
        let a = r.get("a").expect("a");
        assert_eq!(a.index(0).and_then(|x| x.as_f64()), Some(10.0));
        assert_eq!(
            a.index(1).and_then(|x| x.index(1)).and_then(|x| x.as_f64()),
            Some(21.0)
        );
        assert_eq!(
            a.index(2).and_then(|x| x.get("q")).map(|x| x.node()),
            Some(Node::Bool(true))
        );
        assert!(a.index(3).is_none());
        assert!(r.index(0).is_none());
        let mut out = String::new();
        r.get("m").expect("m").write_compact(&mut out);
        assert_eq!(out, r#"{"k":"y"}"#);
        assert_eq!(
            d.input(),
            r#"{"n":1,"m":{"k":"x","k":"y"},"n":2,"a":[10,[20,21],{"q":true}]}"#
        );
    }

    /// Objects know whether a name repeats (look-ups then stop at the first
    /// match): names that share a hash bit are compared, nested values in
    /// between are skipped, unescaped names count by their text.
    #[test]
    fn objects_know_whether_names_repeat() {
        let unique = |text: &str| match Doc::parse(text).expect("parses").root().node() {
            Node::Object { unique, .. } => unique,
            other => panic!("{other:?}"),
        };
        let many: String = format!(
            "{{{}}}",
            (0..200)
                .map(|i| format!("\"k{i}\":{{\"k{i}\":[{i}]}}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(unique(&many));
        assert!(unique(r#"{"ab":1,"ba":2,"a":{"a":1},"b":[{"a":2}]}"#));
        assert!(!unique(r#"{"a":{"x":1,"y":[1,2]},"b":2,"a":3}"#));
        assert!(!unique(r#"{"a\u0062":1,"ab":2}"#));
        assert!(!unique(&format!("{},\"k7\":0}}", &many[..many.len() - 1])));
    }

    /// The per-thread scratch is reused, and gives its room back after a
    /// huge document; a failed parse leaves nothing behind for the next.
    #[test]
    fn scratch_is_bounded_and_reused() {
        let big = format!("[{}]", vec!["1"; 100_000].join(","));
        let d = Doc::parse(&big).expect("parses");
        assert_eq!(d.root().elements().count(), 100_000);
        let cap = SCRATCH.with(|s| {
            let v = s.take();
            let c = v.capacity();
            s.set(v);
            c
        });
        assert!(cap <= SCRATCH_KEEP, "{cap}");
        assert!(Doc::parse(r#"{"a":[1,2,"#).is_err());
        let d = Doc::parse(r#"{"x":{"y":1}}"#).expect("parses");
        assert_eq!(d.root().to_value(), serde_json::json!({"x":{"y":1}}));
    }

    /// Found by the differential fuzz target: serde_json's `Value` reads an
    /// object whose first member is named `$serde_json::private::RawValue`
    /// as a raw value and rejects a non-string there. For the decoder it is
    /// the ordinary JSON object it is.
    #[test]
    fn serde_json_private_member_names_are_ordinary() {
        let text = "{\"$serde_json::private::RawValue\":0E333,\"type\":\"a\"}";
        assert!(
            serde_json::from_str::<Value>(text).is_err(),
            "serde_json's quirk"
        );
        let d = Doc::parse(text).expect("valid JSON");
        assert_eq!(
            d.root()
                .get("$serde_json::private::RawValue")
                .and_then(|v| v.as_f64()),
            Some(0.0)
        );
        assert_eq!(d.root().get("type").and_then(|v| v.as_str()), Some("a"));
        let mut out = String::new();
        d.root().write_compact(&mut out);
        assert_eq!(out, r#"{"$serde_json::private::RawValue":0,"type":"a"}"#);
    }

    #[test]
    fn escaped_strings_are_unescaped_after_the_input() {
        let text = r#"{"k\u00e9y":"tab\there","plain":"x"}"#;
        let d = Doc::parse(text).expect("parses");
        assert_eq!(d.input(), text);
        assert_eq!(
            d.root().get("kéy").and_then(|v| v.as_str()),
            Some("tab\there")
        );
        assert_eq!(d.root().get("plain").and_then(|v| v.as_str()), Some("x"));
    }

    /// A JSON value for the property test: objects may repeat names,
    /// which `serde_json::Value` cannot hold, so the text is written here.
    #[derive(Debug, Clone)]
    enum Gen {
        Leaf(Value),
        Array(Vec<Gen>),
        Object(Vec<(String, Gen)>),
    }

    impl Gen {
        fn write(&self, out: &mut String) {
            match self {
                Gen::Leaf(v) => out.push_str(&v.to_string()),
                Gen::Array(items) => {
                    out.push('[');
                    for (i, g) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        g.write(out);
                    }
                    out.push(']');
                }
                Gen::Object(members) => {
                    out.push('{');
                    for (i, (k, g)) in members.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(&Value::String(k.clone()).to_string());
                        out.push(':');
                        g.write(out);
                    }
                    out.push('}');
                }
            }
        }
    }

    fn arb_gen() -> impl proptest::strategy::Strategy<Value = Gen> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[abk\"\\\\é\n]{0,4}".prop_map(Value::String),
        ]
        .prop_map(Gen::Leaf);
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Gen::Array),
                proptest::collection::vec(("[abk\"]{0,2}", inner), 0..6).prop_map(Gen::Object),
            ]
        })
    }

    proptest::proptest! {
        /// Random JSON, with repeated names and escapes: the tape's value,
        /// its look-ups and its compact text equal serde_json's.
        #[test]
        fn random_documents(g in arb_gen(), names in proptest::collection::vec("[abk\"]{0,2}", 1..4)) {
            let mut text = String::new();
            g.write(&mut text);
            let doc = Doc::parse(&text).expect("parses");
            let value: Value = serde_json::from_str(&text).expect("parses");
            proptest::prop_assert_eq!(doc.root().to_value(), value.clone());
            let mut cur = Some(doc.root());
            let mut want = Some(&value);
            for n in &names {
                cur = cur.and_then(|c| c.get(n));
                want = want.and_then(|w| w.get(n.as_str()));
                proptest::prop_assert_eq!(cur.map(|c| c.to_value()), want.cloned());
            }
            let mut out = String::new();
            doc.root().write_compact(&mut out);
            proptest::prop_assert_eq!(out, json::compact(&value));
        }
    }
}
