//! The payload of a log record, in a small binary form: what the engine saw
//! (raw event texts with their decoded times) and where it came from.

use crate::source::FileOffset;

/// An HTTP request's idempotency key and the answer it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotent {
    pub key: String,
    pub status: u16,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Accepted events: `(time ms, input text)` each.
    Batch {
        source: String,
        events: Vec<(i64, String)>,
        offset: Option<FileOffset>,
        idempotent: Option<Idempotent>,
    },
    /// An idle advance of the watermark to this instant.
    Watermark(i64),
    /// From here on the rules are these files, `(name, text)` in load
    /// order: a reload (or rules found changed at start), so that recovery
    /// evaluates each record with the rules that were running then.
    Rules(Vec<(String, String)>),
}

const BATCH: u8 = 1;
const WATERMARK: u8 = 2;
const RULES: u8 = 3;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Some(h)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_le_bytes)
    }
    fn str(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        self.take(n)
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(str::to_string)
    }
}

/// A record payload encoded away from the log writer (on the source's
/// task, which decodes the events anyway), with its checksum, so the log
/// writer only frames and copies it.
pub struct Encoded {
    payload: Vec<u8>,
    /// CRC-32 state of `payload` alone; the frame's checksum combines it
    /// with the LSN's.
    crc: crc32fast::Hasher,
}

impl Encoded {
    /// A batch record of events `(time ms, input text)`.
    pub fn batch<'e>(
        source: &str,
        events: impl ExactSizeIterator<Item = (i64, &'e str)> + Clone,
        offset: Option<&FileOffset>,
        idempotent: Option<&Idempotent>,
    ) -> Self {
        let size = events.clone().map(|(_, r)| r.len() + 12).sum::<usize>() + 64;
        let mut payload = Vec::with_capacity(size);
        encode_batch(&mut payload, source, events, offset, idempotent);
        Encoded::new(payload)
    }

    pub fn new(payload: Vec<u8>) -> Self {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&payload);
        Encoded { payload, crc }
    }

    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    pub(super) fn crc(&self) -> crc32fast::Hasher {
        self.crc.clone()
    }
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Encoded({} bytes)", self.payload.len())
    }
}

/// Encodes a batch record without first copying the events into a [`Record`].
pub fn encode_batch<'e>(
    out: &mut Vec<u8>,
    source: &str,
    events: impl ExactSizeIterator<Item = (i64, &'e str)>,
    offset: Option<&FileOffset>,
    idempotent: Option<&Idempotent>,
) {
    out.push(BATCH);
    put_str(out, source);
    match offset {
        Some(o) => {
            out.push(1);
            put_str(out, &o.path);
            out.extend_from_slice(&o.identity.0.to_le_bytes());
            out.extend_from_slice(&o.identity.1.to_le_bytes());
            out.extend_from_slice(&o.offset.to_le_bytes());
        }
        None => out.push(0),
    }
    match idempotent {
        Some(i) => {
            out.push(1);
            put_str(out, &i.key);
            out.extend_from_slice(&i.status.to_le_bytes());
            put_str(out, &i.body);
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(events.len() as u32).to_le_bytes());
    for (t, raw) in events {
        out.extend_from_slice(&t.to_le_bytes());
        put_str(out, raw);
    }
}

impl Record {
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Batch {
                source,
                events,
                offset,
                idempotent,
            } => encode_batch(
                out,
                source,
                events.iter().map(|(t, r)| (*t, r.as_str())),
                offset.as_ref(),
                idempotent.as_ref(),
            ),
            Record::Watermark(w) => {
                out.push(WATERMARK);
                out.extend_from_slice(&w.to_le_bytes());
            }
            Record::Rules(files) => {
                out.push(RULES);
                out.extend_from_slice(&(files.len() as u32).to_le_bytes());
                for (name, text) in files {
                    put_str(out, name);
                    put_str(out, text);
                }
            }
        }
    }

    pub fn decode(b: &[u8]) -> Option<Record> {
        let mut r = Reader { b };
        let rec = match r.u8()? {
            BATCH => {
                let source = r.str()?;
                let offset = match r.u8()? {
                    0 => None,
                    1 => Some(FileOffset {
                        path: r.str()?,
                        identity: (r.u64()?, r.u64()?),
                        offset: r.u64()?,
                    }),
                    _ => return None,
                };
                let idempotent = match r.u8()? {
                    0 => None,
                    1 => Some(Idempotent {
                        key: r.str()?,
                        status: r.u16()?,
                        body: r.str()?,
                    }),
                    _ => return None,
                };
                let n = r.u32()? as usize;
                let mut events = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    let t = r.i64()?;
                    events.push((t, r.str()?));
                }
                Record::Batch {
                    source,
                    events,
                    offset,
                    idempotent,
                }
            }
            WATERMARK => Record::Watermark(r.i64()?),
            RULES => {
                let n = r.u32()? as usize;
                let mut files = Vec::with_capacity(n.min(1 << 10));
                for _ in 0..n {
                    files.push((r.str()?, r.str()?));
                }
                Record::Rules(files)
            }
            _ => return None,
        };
        r.b.is_empty().then_some(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let recs = [
            Record::Watermark(-5),
            Record::Rules(vec![
                ("rules/a.rules".into(), "rule a { from x }\n".into()),
                ("rules/é.rules".into(), String::new()),
            ]),
            Record::Rules(Vec::new()),
            Record::Batch {
                source: "file".into(),
                events: vec![(1, "{\"a\":\"é\"}".into()), (2, "{}".into())],
                offset: Some(FileOffset {
                    path: "/x/y.ndjson".into(),
                    identity: (3, 4),
                    offset: 99,
                }),
                idempotent: Some(Idempotent {
                    key: "k".into(),
                    status: 202,
                    body: "{\"accepted\":2}".into(),
                }),
            },
        ];
        for r in recs {
            let mut b = Vec::new();
            r.encode(&mut b);
            assert_eq!(Record::decode(&b), Some(r.clone()));
            assert_eq!(Record::decode(&b[..b.len() - 1]), None);
        }
    }

    /// Found by fuzzing the log reader: an option flag other than 0 or 1
    /// was read as "present", so the record did not re-encode to the same
    /// bytes. Such a record is now corrupt.
    #[test]
    fn option_flags_other_than_0_and_1_are_corruption() {
        let bytes = [
            1, 4, 0, 0, 0, 1, 4, 0, 0, 0, 47, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(Record::decode(&bytes), None);
    }
}
