//! The write-ahead log: numbered segment files of checksummed entries, one entry per request.
//!
//! Entry layout (little endian):
//! `magic: u32 = "TFW1" | payload_len: u32 | crc32(payload): u32 | payload`, where the payload
//! is either rows, `n: u8` (< 255) then `n` times `table_tag: u8 | ipc_len: u32 | Arrow IPC
//! stream`, or a logged request, `255 | signal: u8 | json: u8 | received_at: u64 | organization,
//! workspace, tenant as (len: u16, utf-8) | body`, converted again on replay.
//!
//! A crash can leave a torn entry at the end of the last segment; replay stops at the first
//! entry whose length or checksum does not hold and truncates the segment there. Such an entry
//! was never acknowledged, because acknowledgement waits for `fdatasync`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use model::{Scope, Signal, Table};
use storage::RawExport;

const MAGIC: u32 = u32::from_le_bytes(*b"TFW1");
const HEADER: usize = 12;
/// An entry larger than this is corruption, not data (requests are capped far below).
const MAX_ENTRY: usize = 1 << 30;

pub(crate) fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:012}.log"))
}

/// Segment numbers present in `dir`, ascending.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(num) = name.strip_suffix(".log")
            && let Ok(n) = num.parse::<u64>()
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

const RAW: u8 = 255;

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(HEADER + payload.len());
    entry.extend_from_slice(&MAGIC.to_le_bytes());
    entry.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    entry.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    entry.extend_from_slice(payload);
    entry
}

fn signal_tag(s: Signal) -> u8 {
    match s {
        Signal::Traces => 1,
        Signal::Logs => 2,
        Signal::Metrics => 3,
    }
}

/// Serializes a logged request into a WAL entry.
pub(crate) fn encode_raw_entry(raw: &RawExport) -> Vec<u8> {
    let ids = [
        &raw.scope.organization_id,
        &raw.scope.workspace_id,
        &raw.scope.tenant_id,
    ];
    let mut payload = Vec::with_capacity(raw.body.len() + 128);
    payload.push(RAW);
    payload.push(signal_tag(raw.signal));
    payload.push(u8::from(raw.json));
    payload.extend_from_slice(&raw.received_at.to_le_bytes());
    for id in ids {
        let bytes = &id.as_bytes()[..id.len().min(usize::from(u16::MAX))];
        payload.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        payload.extend_from_slice(bytes);
    }
    payload.extend_from_slice(&raw.body);
    frame(&payload)
}

fn decode_raw(mut r: &[u8]) -> Option<RawExport> {
    let signal = match *r.first()? {
        1 => Signal::Traces,
        2 => Signal::Logs,
        3 => Signal::Metrics,
        _ => return None,
    };
    let json = *r.get(1)? != 0;
    let received_at = u64::from_le_bytes(r.get(2..10)?.try_into().ok()?);
    r = &r[10..];
    let mut ids = Vec::with_capacity(3);
    for _ in 0..3 {
        let len = usize::from(u16::from_le_bytes(r.get(..2)?.try_into().ok()?));
        ids.push(String::from_utf8(r.get(2..2 + len)?.to_vec()).ok()?);
        r = &r[2 + len..];
    }
    let tenant_id = ids.pop()?;
    let workspace_id = ids.pop()?;
    let organization_id = ids.pop()?;
    Some(RawExport {
        signal,
        json,
        received_at,
        scope: Scope {
            organization_id,
            workspace_id,
            tenant_id,
        },
        body: bytes::Bytes::copy_from_slice(r),
    })
}

/// One replayed entry.
pub(crate) enum Replayed {
    Rows(Entry),
    Request(RawExport),
}

/// Serializes one request's batches into a WAL entry.
pub(crate) fn encode_entry(
    batches: &[(Table, RecordBatch)],
) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let estimate: usize = batches.iter().map(|(_, b)| b.get_array_memory_size()).sum();
    let mut payload = Vec::with_capacity(estimate + 4096);
    let n = batches.len().min(usize::from(RAW) - 1);
    payload.push(u8::try_from(n).unwrap_or(0));
    for (table, batch) in batches.iter().take(n) {
        payload.push(table.tag());
        let len_at = payload.len();
        payload.extend_from_slice(&[0; 4]);
        {
            let mut w = StreamWriter::try_new(&mut payload, &batch.schema())?;
            w.write(batch)?;
            w.finish()?;
        }
        let ipc_len = u32::try_from(payload.len() - len_at - 4).unwrap_or(u32::MAX);
        payload[len_at..len_at + 4].copy_from_slice(&ipc_len.to_le_bytes());
    }
    Ok(frame(&payload))
}

fn decode_payload(payload: &[u8]) -> Option<Replayed> {
    let (&n, mut rest) = payload.split_first()?;
    if n == RAW {
        return decode_raw(rest).map(Replayed::Request);
    }
    let mut out = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let (&tag, r) = rest.split_first()?;
        let table = Table::from_tag(tag)?;
        if r.len() < 4 {
            return None;
        }
        let len = u32::from_le_bytes(r[..4].try_into().ok()?) as usize;
        let r = &r[4..];
        if r.len() < len {
            return None;
        }
        let reader = StreamReader::try_new(Cursor::new(&r[..len]), None).ok()?;
        for batch in reader {
            out.push((table, batch.ok()?));
        }
        rest = &r[len..];
    }
    Some(Replayed::Rows(out))
}

/// Reads every intact entry of a segment, truncating it after the last one.
///
/// Returns the entries and how many bytes were cut off.
/// The batches of one WAL entry (one request).
pub(crate) type Entry = Vec<(Table, RecordBatch)>;

pub(crate) fn replay_segment(path: &Path) -> io::Result<(Vec<Replayed>, u64)> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let total = file.metadata()?.len();
    let mut reader = BufReader::new(&mut file);
    let mut good: u64 = 0;
    let mut entries = Vec::new();
    loop {
        let mut header = [0u8; HEADER];
        if reader.read_exact(&mut header).is_err() {
            break;
        }
        let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        if magic != MAGIC || len > MAX_ENTRY {
            break;
        }
        let mut payload = vec![0u8; len];
        if reader.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
            break;
        }
        let Some(batches) = decode_payload(&payload) else {
            break;
        };
        entries.push(batches);
        good += (HEADER + len) as u64;
    }
    drop(reader);
    let cut = total - good;
    if cut > 0 {
        file.set_len(good)?;
        file.sync_all()?;
    }
    Ok((entries, cut))
}

/// The segment being appended to.
pub(crate) struct Segment {
    pub number: u64,
    file: File,
    pub bytes: u64,
}

impl Segment {
    pub fn create(dir: &Path, number: u64) -> io::Result<Segment> {
        let path = segment_path(dir, number);
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        let bytes = file.seek(SeekFrom::End(0))?;
        sync_dir(dir)?;
        Ok(Segment {
            number,
            file,
            bytes,
        })
    }

    pub fn append(&mut self, entry: &[u8]) -> io::Result<()> {
        self.file.write_all(entry)?;
        self.bytes += entry.len() as u64;
        Ok(())
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Cuts the segment back to `len` bytes (after a failed append).
    pub fn truncate_to(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.bytes = len;
        Ok(())
    }
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(v: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![v, v + 1]))])
            .expect("batch")
    }

    #[test]
    fn logged_requests_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = RawExport {
            signal: Signal::Metrics,
            json: true,
            received_at: 42,
            scope: Scope {
                organization_id: "o".into(),
                workspace_id: "wé".into(),
                tenant_id: "t".into(),
            },
            body: bytes::Bytes::from_static(b"{\"resourceMetrics\":[]}"),
        };
        let mut seg = Segment::create(dir.path(), 7).expect("segment");
        seg.append(&encode_raw_entry(&raw)).expect("append");
        seg.append(&encode_entry(&[(Table::Logs, batch(1))]).expect("encode"))
            .expect("append");
        seg.sync().expect("sync");
        let (entries, cut) = replay_segment(&segment_path(dir.path(), 7)).expect("replay");
        assert_eq!(cut, 0);
        let Replayed::Request(back) = &entries[0] else {
            panic!("expected a logged request")
        };
        assert_eq!(
            (
                back.signal,
                back.json,
                back.received_at,
                &back.scope,
                &back.body
            ),
            (raw.signal, raw.json, raw.received_at, &raw.scope, &raw.body)
        );
        assert!(matches!(&entries[1], Replayed::Rows(_)));
    }

    #[test]
    fn a_torn_tail_is_cut_and_everything_before_it_replays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut seg = Segment::create(dir.path(), 1).expect("segment");
        for v in 0..3 {
            let e = encode_entry(&[(Table::Logs, batch(v))]).expect("encode");
            seg.append(&e).expect("append");
        }
        let e = encode_entry(&[(Table::Traces, batch(9))]).expect("encode");
        seg.append(&e[..e.len() / 2]).expect("append");
        seg.sync().expect("sync");
        drop(seg);
        let path = segment_path(dir.path(), 1);
        let (entries, cut) = replay_segment(&path).expect("replay");
        assert_eq!(entries.len(), 3);
        assert_eq!(cut, (e.len() / 2) as u64);
        assert!(matches!(&entries[2], Replayed::Rows(rows) if rows[0].0 == Table::Logs));
        let (again, cut) = replay_segment(&path).expect("replay");
        assert_eq!((again.len(), cut), (3, 0));
        assert_eq!(list_segments(dir.path()).expect("list"), vec![1]);
    }
}
