//! Rule keys: the values of a rule's key expressions for one event, written
//! once as compact JSON (rule-language.md 2.3). That text is the key's
//! identity (`1` and `1.0` are one key), its timer order and its `key`
//! object in alerts.

use super::expr::{Ctx, write_compact};
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
        if !write_compact(&k.expr, &cx, out) {
            return false;
        }
    }
    out.push('}');
    true
}
