//! Rule keys: the values of a rule's key expressions for one event, written
//! once as compact JSON (rule-language.md 2.3). That text is the key's
//! identity, its timer order and its `key` object in alerts, so it is
//! canonical: values `==` treats as equal give one text (`1` and `1.0` are
//! one key; an object's members are written sorted bytewise by name at any
//! depth, so `{"a":1,"b":2}` and `{"b":2,"a":1}` are one key).

use super::expr::{Ctx, write_key_value};
use crate::event::{Doc, json};
use crate::lang::program::KeyExpr;

/// Hash maps of the engine: keys come from event fields (attacker-chosen),
/// so the hasher is seeded per process (no collision flooding) but fast.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A key as compact JSON text, e.g. `{"user":"alice"}`; `{}` for no key.
/// Ordered bytewise, as timers at one instant must be. Keys of up to 23
/// bytes are held inline (most are: `{"user":"user-0028581"}`), so a key
/// table's look-up compares the text in the table's own memory instead of
/// following a pointer; longer ones are shared (`Arc<str>`) and clone
/// without copying.
pub type Key = smol_str::SmolStr;

/// The key of an event, or `None` when a key expression is null (the event is
/// then not evaluated by the rule: `key_missing`).
pub fn key_of(exprs: &[KeyExpr], fields: &Doc) -> Option<Key> {
    let mut out = String::with_capacity(2 + 16 * exprs.len());
    key_into(exprs, fields, &mut out).then(|| Key::from(out))
}

/// Writes the key text into `out` (cleared first); `false` when a key
/// expression is null.
pub fn key_into(exprs: &[KeyExpr], fields: &Doc, out: &mut String) -> bool {
    out.clear();
    write_key(exprs, fields, out, true)
}

/// The text every key of a rule starts with: `{"name":` for its first key
/// expression, nothing for a rule without keys (whose one key is `{}`).
pub fn key_prefix(exprs: &[KeyExpr]) -> String {
    let mut out = String::new();
    if let Some(k) = exprs.first() {
        write_name(&mut out, '{', k);
    }
    out
}

/// [`key_into`] without the rule's [`key_prefix`]: how the engine holds a
/// key. A prefix all keys of a rule share changes neither their identity
/// nor their bytewise order, and the rest is short enough to sit inline in
/// the key tables far more often (`"s-0-00a918"}` rather than
/// `{"session":"s-0-00a918"}`, 24 bytes, one over the inline limit).
pub fn short_key_into(exprs: &[KeyExpr], fields: &Doc, out: &mut String) -> bool {
    out.clear();
    write_key(exprs, fields, out, false)
}

/// The whole key text from a rule's [`key_prefix`] and a short key.
pub fn full_key(prefix: &str, short: &str) -> Key {
    Key::from(whole_text(prefix, short))
}

/// [`full_key`] as a `String` (snapshots), built in one allocation.
pub fn whole_text(prefix: &str, short: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + short.len());
    s.push_str(prefix);
    s.push_str(short);
    s
}

/// `{"name":` before the first key expression's value, `,"name":` before
/// the others'.
fn write_name(out: &mut String, before: char, k: &KeyExpr) {
    out.push(before);
    json::write_string(out, &k.name);
    out.push(':');
}

fn write_key(exprs: &[KeyExpr], fields: &Doc, out: &mut String, prefix: bool) -> bool {
    let Some(first) = exprs.first() else {
        out.push_str("{}");
        return true;
    };
    if prefix {
        write_name(out, '{', first);
    }
    let cx = Ctx::event(fields);
    for (i, k) in exprs.iter().enumerate() {
        if i > 0 {
            write_name(out, ',', k);
        }
        if !write_key_value(&k.expr, &cx, out) {
            return false;
        }
    }
    out.push('}');
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::program::{CExpr, PathSeg};

    fn field(name: &str) -> KeyExpr {
        KeyExpr {
            name: name.into(),
            expr: CExpr::Field(vec![PathSeg::Field(name.into())].into_boxed_slice()),
        }
    }

    fn key(exprs: &[KeyExpr], event: &str) -> Option<String> {
        let doc = Doc::parse(event).expect("event JSON");
        key_of(exprs, &doc).map(|k| k.to_string())
    }

    /// Values `==` treats as equal are one key (rule-language.md 4): object
    /// members are written sorted bytewise by name at every depth, a
    /// repeated name keeps its last value, numbers in ECMAScript form.
    #[test]
    fn object_values_are_written_canonically() {
        let ks = [field("k")];
        let want = Some(r#"{"k":{"a":1,"b":2}}"#.to_owned());
        assert_eq!(key(&ks, r#"{"k":{"a":1,"b":2}}"#), want);
        assert_eq!(key(&ks, r#"{"k":{"b":2,"a":1}}"#), want);
        assert_eq!(key(&ks, r#"{"k":{"b":2.0,"a":1e0}}"#), want);
        assert_eq!(key(&ks, r#"{"k":{"b":5,"a":1,"b":2}}"#), want);
        // Nested, inside arrays, and bytewise (upper case and ASCII first).
        let nested = Some(r#"{"k":[{"B":0,"a":[{"x":1,"y":2}]},{"z":0,"é":1}]}"#.to_owned());
        assert_eq!(
            key(
                &ks,
                r#"{"k":[{"a":[{"y":2,"x":1}],"B":0},{"z":0,"\u00e9":1}]}"#
            ),
            nested
        );
        assert_eq!(
            key(&ks, r#"{"k":[{"B":0,"a":[{"x":1,"y":2}]},{"é":1,"z":0}]}"#),
            nested
        );
        // Order inside arrays is kept: arrays are ordered values.
        assert_ne!(key(&ks, r#"{"k":[1,2]}"#), key(&ks, r#"{"k":[2,1]}"#));
        // Scalars are unchanged.
        assert_eq!(key(&ks, r#"{"k":1.0}"#), Some(r#"{"k":1}"#.to_owned()));
        assert_eq!(
            key(&ks, r#"{"k":"x\"y"}"#),
            Some(r#"{"k":"x\"y"}"#.to_owned())
        );
        assert_eq!(key(&ks, r#"{"k":null}"#), None);
        assert_eq!(key(&[], r#"{"k":{"b":1,"a":2}}"#), Some("{}".to_owned()));
    }

    /// The engine holds keys without the rule's prefix: the short key of an
    /// object value is the same canonical text, and prefix + short key is
    /// the whole key, whatever the input member order.
    #[test]
    fn short_keys_are_canonical_too() {
        let ks = [field("k"), field("m")];
        let prefix = key_prefix(&ks);
        assert_eq!(prefix, r#"{"k":"#);
        let mut a = String::new();
        let mut b = String::new();
        let da = Doc::parse(r#"{"m":{"q":[{"t":1,"s":2}],"p":0},"k":"x"}"#).expect("a");
        let db = Doc::parse(r#"{"k":"x","m":{"p":0,"q":[{"s":2,"t":1}]}}"#).expect("b");
        assert!(short_key_into(&ks, &da, &mut a));
        assert!(short_key_into(&ks, &db, &mut b));
        assert_eq!(a, b);
        assert_eq!(a, r#""x","m":{"p":0,"q":[{"s":2,"t":1}]}}"#);
        let whole = key_of(&ks, &da).expect("key");
        assert_eq!(full_key(&prefix, &a), whole);
        let mut buf = String::from("stale");
        assert!(key_into(&ks, &db, &mut buf));
        assert_eq!(buf, whole.as_str());
    }
}
