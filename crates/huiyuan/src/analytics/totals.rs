//! Per-member purchase totals (last date, count, sum) read straight from a transactions CSV:
//! what RFM needs, from files of tens of millions of rows.
//!
//! Why not [`super::load_csv`] followed by `rfm`: numbering a million member IDs in one hash
//! table that every row touches makes nearly every row a cache miss, since the table is far
//! larger than the cache and a date-ordered export visits members in no order. Here the file is
//! read in rounds. In each round every thread parses the next stretch of its part of the file
//! and sorts the rows into partitions by a hash of the member ID (radix partitioning, as column
//! stores do); then each thread sums the partitions it owns, whose members fit in the cache.
//! The round's buffers are reused by the next, so memory holds one round of rows and the
//! members' totals, never the file or a column of its dates.
//!
//! The results are exactly those of `load_csv` + `rfm`, members in order of first appearance
//! (a test holds the two paths equal). Files this reader does not take — quoted fields or
//! carriage returns — are left to the general path: [`member_totals_csv`] answers `None`.

use std::fs::File;
use std::hash::Hasher;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex, RwLock};

use rustc_hash::{FxHashMap, FxHasher};
use time::Date;

use super::{columns, parse_amount, parse_date, parse_row};
use crate::AnyError;

/// Each member's purchases on or before the as-of date; index `i` is member `i`, numbered in
/// order of first appearance in the file (rows after the as-of date count for that order, as
/// in `load_csv`). Members whose rows all lie after the as-of date have a count of zero.
pub struct MemberTotals {
    pub ids: MemberIds,
    pub last: Vec<Date>,
    pub count: Vec<u64>,
    pub sum: Vec<i64>,
}

/// Member IDs in one buffer: a million small strings allocated one by one cost more than
/// reading them.
#[derive(Default)]
pub struct MemberIds {
    text: String,
    /// Where each ID ends in `text`.
    ends: Vec<usize>,
}

impl MemberIds {
    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }
}

impl From<Vec<String>> for MemberIds {
    fn from(ids: Vec<String>) -> Self {
        let mut out = MemberIds::default();
        for id in ids {
            out.text.push_str(&id);
            out.ends.push(out.text.len());
        }
        out
    }
}

/// How the file is cut up; tests make the pieces small to exercise every boundary.
#[derive(Debug, Clone, Copy)]
pub struct ReadPlan {
    pub threads: usize,
    /// Bytes read at a time by each thread (a longer line grows its buffer).
    pub block: usize,
    /// Rows each thread parses per round.
    pub round_rows: usize,
    /// log2 of the number of partitions; `None` picks one from the file's size.
    pub partition_bits: Option<u32>,
}

impl Default for ReadPlan {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(16),
            block: 1 << 20,
            // 64 MiB of rows per thread: enough that each member's totals are visited a few
            // times per round, not once per row (see docs/benchmarks.md for the trade-off).
            round_rows: 1 << 21,
            partition_bits: None,
        }
    }
}

/// One row as it waits in its partition: 32 bytes.
#[derive(Clone, Copy)]
struct Row {
    /// The member ID packed (IDs under 16 bytes), or [`LONG_ID`].
    key: [u64; 2],
    amount: i64,
    /// The Julian day number, or [`AFTER_AS_OF`].
    day: i32,
    /// Where the row's line starts, from the start of its round.
    offset: u32,
}

const EMPTY_ROW: Row = Row {
    key: [0; 2],
    amount: 0,
    day: 0,
    offset: 0,
};

/// The key of a row whose member ID has 16 bytes or more: the ID itself is the next one in
/// its partition's list of long IDs. A packed short ID never looks like this (its last byte is
/// its length, at most 15).
const LONG_ID: [u64; 2] = [u64::MAX, u64::MAX];
/// A row dated after the as-of date: it numbers its member but is not a purchase.
const AFTER_AS_OF: i32 = i32::MAX;

/// Why a thread stopped early.
enum Stop {
    /// The file needs the general reader (quotes, carriage returns).
    General,
    /// A bad row: the absolute position of its line, and why.
    Row(u64, String),
    Io(std::io::Error),
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Io(e)
    }
}

/// Reads the file's per-member totals as of `as_of`, or `None` when the file needs the
/// general reader. Errors name the line and the reason, as `load_csv` does.
pub fn member_totals_csv(path: &Path, as_of: Date, plan: ReadPlan) -> Result<Option<MemberTotals>, AnyError> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = file.metadata()?.len();
    let mut head = vec![0u8; 64 << 10];
    let n = read_full_at(&file, &mut head, 0)?;
    head.truncate(n);
    let header_end = match memchr::memchr(b'\n', &head) {
        Some(end) => end,
        // The file is its header line.
        None if head.len() as u64 == len => head.len(),
        // A header of over 64 KiB: the general reader takes it.
        None => return Ok(None),
    };
    if memchr::memchr2(b'"', b'\r', &head[..header_end]).is_some() {
        return Ok(None);
    }
    let headers: Vec<&[u8]> = head[..header_end].split(|&b| b == b',').collect();
    let cols = columns(path, &headers)?;
    let body_start = header_end as u64 + 1;
    let body_len = len.saturating_sub(body_start);
    let threads = plan.threads.max(1);
    let bits = plan.partition_bits.unwrap_or_else(|| {
        // The first block's lines estimate the file's rows.
        let sample = head.get(header_end + 1..).unwrap_or_default();
        let line_bytes = (sample.len() / memchr::memchr_iter(b'\n', sample).count().max(1)).max(8);
        partition_bits_for(body_len / line_bytes as u64)
    });
    let parts_n = 1usize << bits;
    let settings = Settings {
        cols,
        last_col: cols[0].max(cols[1]).max(cols[2]),
        as_of_day: days(as_of),
        bits,
    };

    // Thread t reads the lines that start in its t-th of the body and sums partitions
    // p ≡ t (mod threads).
    let scatters: Vec<RwLock<Scatter>> = (0..threads)
        .map(|_| RwLock::new(Scatter::new(parts_n, plan.round_rows / parts_n * 5 / 4 + 16)))
        .collect();
    let barrier = Barrier::new(threads);
    let finished = AtomicUsize::new(0);
    let general = AtomicBool::new(false);
    let stops: Mutex<Vec<Stop>> = Mutex::new(Vec::new());
    let summed: Vec<Vec<Summed>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (scatters, barrier, finished, general, stops) =
                    (&scatters, &barrier, &finished, &general, &stops);
                let (file, settings) = (&file, &settings);
                scope.spawn(move || {
                    let range = (
                        body_start + body_len * t as u64 / threads as u64,
                        body_start + body_len * (t as u64 + 1) / threads as u64,
                    );
                    let mut reader = Reader::new(file, len, range, plan.block);
                    let mut tables: Vec<Table> =
                        (t..parts_n).step_by(threads).map(|_| Table::default()).collect();
                    let mut done = false;
                    loop {
                        {
                            let mut scatter = scatters[t].write().unwrap_or_else(|e| e.into_inner());
                            scatter.clear();
                            if !done {
                                match reader.fill(&mut scatter, settings, plan.round_rows) {
                                    Ok(more) => done = !more,
                                    Err(stop) => {
                                        done = true;
                                        if matches!(stop, Stop::General) {
                                            general.store(true, Ordering::Relaxed);
                                        }
                                        stops.lock().unwrap_or_else(|e| e.into_inner()).push(stop);
                                    }
                                }
                                if done {
                                    finished.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                        }
                        barrier.wait();
                        if general.load(Ordering::Relaxed) {
                            return Vec::new();
                        }
                        let all_done = finished.load(Ordering::SeqCst) == threads;
                        let rounds: Vec<_> = scatters
                            .iter()
                            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()))
                            .collect();
                        for (table, p) in tables.iter_mut().zip((t..parts_n).step_by(threads)) {
                            for round in &rounds {
                                table.add(round, p);
                            }
                        }
                        drop(rounds);
                        barrier.wait();
                        if all_done {
                            // Sorted here, on every core, so that the merge only streams.
                            let mut members: Vec<Summed> =
                                tables.into_iter().flat_map(|t| t.members).collect();
                            members.sort_unstable_by_key(|m| m.first);
                            return members;
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let stops = stops.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut first_bad: Option<(u64, String)> = None;
    for stop in stops {
        match stop {
            Stop::General => return Ok(None),
            Stop::Io(e) => return Err(format!("{}: {e}", path.display()).into()),
            Stop::Row(at, why) => {
                if first_bad.as_ref().is_none_or(|(b, _)| at < *b) {
                    first_bad = Some((at, why));
                }
            }
        }
    }
    if let Some((at, why)) = first_bad {
        // A quote or a carriage return earlier in the file sends it to the general reader,
        // which reports errors in its own terms; otherwise the line number is counted now.
        return match line_of(&file, at)? {
            None => Ok(None),
            Some(line) => Err(format!("line {line}: {why}").into()),
        };
    }
    Ok(Some(in_order(summed)))
}

/// What every thread needs to parse a row.
struct Settings {
    cols: [usize; 3],
    last_col: usize,
    as_of_day: i32,
    bits: u32,
}

/// Enough partitions that each holds a few thousand members (so its hash table stays in the
/// cache while it is summed), given the number of rows.
fn partition_bits_for(rows: u64) -> u32 {
    let wanted = (rows / 40_000).max(1);
    (64 - wanted.leading_zeros()).clamp(4, 12)
}

/// The Julian day number: one integer per date, cheap to compare and to keep.
fn days(d: Date) -> i32 {
    d.to_julian_day()
}

/// Reads as many bytes as fit, stopping early only at the end of the file.
fn read_full_at(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], at + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The 1-based line number of the line starting at `at`; `None` when a quote or carriage
/// return comes before it (then the general reader takes the file).
fn line_of(file: &File, at: u64) -> std::io::Result<Option<u64>> {
    let mut buf = vec![0u8; 1 << 20];
    let (mut pos, mut newlines) = (0u64, 0u64);
    while pos < at {
        let want = buf.len().min((at - pos) as usize);
        let n = read_full_at(file, &mut buf[..want], pos)?;
        if n == 0 {
            break;
        }
        if memchr::memchr2(b'"', b'\r', &buf[..n]).is_some() {
            return Ok(None);
        }
        newlines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        pos += n as u64;
    }
    Ok(Some(newlines + 1))
}

/// A member ID of under 16 bytes as two words: the bytes, then the length in the last byte.
/// Built in registers: copying the bytes into an array and reading it back as words stalls
/// the processor on every row (a load cannot be forwarded from several smaller stores).
fn pack(id: &[u8]) -> [u64; 2] {
    let (lo, hi) = id.split_at(id.len().min(8));
    [word(lo), word(hi) | ((id.len() as u64) << 56)]
}

/// Up to eight bytes as a little-endian word.
fn word(bytes: &[u8]) -> u64 {
    match <[u8; 8]>::try_from(bytes) {
        Ok(whole) => u64::from_le_bytes(whole),
        Err(_) => bytes
            .iter()
            .enumerate()
            .fold(0, |w, (i, &b)| w | (u64::from(b) << (8 * i))),
    }
}

fn unpack(key: &[u64; 2]) -> [u8; 16] {
    (u128::from(key[0]) | (u128::from(key[1]) << 64)).to_le_bytes()
}

/// The partition of a packed ID (the top bits of a multiplicative hash).
fn partition_of_short(key: [u64; 2], bits: u32) -> usize {
    let h = (key[0] ^ key[1].rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let h = (h ^ (h >> 32)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (h >> (64 - bits)) as usize
}

fn partition_of_long(id: &[u8], bits: u32) -> usize {
    let mut hasher = FxHasher::default();
    hasher.write(id);
    let h = hasher.finish().wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (h >> (64 - bits)) as usize
}

/// One thread's rows of one round, by partition. Writing each row straight to its
/// partition's vector would touch a different page for nearly every row (hundreds of
/// partitions, far apart in memory), and the address translations alone cost more than the
/// parsing; rows are staged a few per partition in one small array and moved on in groups
/// (software write-combining).
struct Scatter {
    /// The file position the round's row offsets count from.
    base: u64,
    parts: Vec<Vec<Row>>,
    /// Per partition, the long IDs of its [`LONG_ID`] rows in order: `u32` length + bytes.
    long_ids: Vec<Vec<u8>>,
    staged: Vec<[Row; STAGE]>,
    staged_len: Vec<u8>,
}

/// Rows staged per partition: four cache lines' worth (measured best of 4, 8 and 16).
const STAGE: usize = 8;

impl Scatter {
    fn new(parts_n: usize, per_part: usize) -> Self {
        Scatter {
            base: 0,
            parts: (0..parts_n).map(|_| Vec::with_capacity(per_part)).collect(),
            long_ids: vec![Vec::new(); parts_n],
            staged: vec![[EMPTY_ROW; STAGE]; parts_n],
            staged_len: vec![0; parts_n],
        }
    }

    fn clear(&mut self) {
        self.parts.iter_mut().for_each(Vec::clear);
        self.long_ids.iter_mut().for_each(Vec::clear);
    }

    #[inline]
    fn push(&mut self, p: usize, row: Row) {
        let n = usize::from(self.staged_len[p]);
        self.staged[p][n] = row;
        if n + 1 == STAGE {
            self.parts[p].extend_from_slice(&self.staged[p]);
            self.staged_len[p] = 0;
        } else {
            self.staged_len[p] = (n + 1) as u8;
        }
    }

    fn flush(&mut self) {
        for (p, part) in self.parts.iter_mut().enumerate() {
            part.extend_from_slice(&self.staged[p][..usize::from(self.staged_len[p])]);
            self.staged_len[p] = 0;
        }
    }
}

/// Reads the lines that start within one range of the file, a round at a time.
struct Reader<'f> {
    file: &'f File,
    len: u64,
    range: (u64, u64),
    /// `None` until the first line start in the range is found.
    started: bool,
    buf: Vec<u8>,
    /// `buf[used..have]` is read and not yet parsed.
    used: usize,
    have: usize,
    /// The file position of `buf[0]`.
    buf_pos: u64,
    /// Dates repeat from row to row in an export, so the last one parsed is remembered.
    date_cache: ([u8; 10], i32),
}

impl<'f> Reader<'f> {
    fn new(file: &'f File, len: u64, range: (u64, u64), block: usize) -> Self {
        Reader {
            file,
            len,
            range,
            started: false,
            buf: vec![0; block.max(64)],
            used: 0,
            have: 0,
            buf_pos: range.0,
            date_cache: ([0; 10], 0),
        }
    }

    /// Parses up to `max_rows` lines into `out`; answers whether lines are left.
    fn fill(&mut self, out: &mut Scatter, s: &Settings, max_rows: usize) -> Result<bool, Stop> {
        if !self.started {
            self.started = true;
            self.buf_pos = line_start_at_or_after(self.file, self.range.0, self.len)?;
        }
        out.base = self.buf_pos + self.used as u64;
        let mut rows = 0;
        loop {
            // Parse the complete lines in the buffer.
            let mut i = self.used;
            let window = &self.buf[i..self.have];
            let mut ends = memchr::memchr_iter(b'\n', window);
            let at_end = self.buf_pos + self.have as u64 >= self.len;
            loop {
                let line_at = self.buf_pos + i as u64;
                if line_at >= self.range.1 || rows == max_rows {
                    let left = line_at < self.range.1 && !(at_end && i >= self.have);
                    self.used = i.min(self.have);
                    out.flush();
                    return Ok(left);
                }
                let line_end = match ends.next() {
                    Some(j) => self.used + j,
                    None if at_end && i < self.have => self.have,
                    None => break,
                };
                let line = &self.buf[i..line_end];
                i = line_end + 1;
                if line.is_empty() {
                    continue;
                }
                let (id, day, amount) =
                    parse_line(line, s, &mut self.date_cache).map_err(|why| Stop::Row(line_at, why))?;
                let day = if day > s.as_of_day { AFTER_AS_OF } else { day };
                let offset = (line_at - out.base) as u32;
                let (p, key) = if id.len() < 16 {
                    let key = pack(id);
                    (partition_of_short(key, s.bits), key)
                } else {
                    // The ID's bytes go in the order its row reaches the partition.
                    let p = partition_of_long(id, s.bits);
                    out.long_ids[p].extend_from_slice(&(id.len() as u32).to_le_bytes());
                    out.long_ids[p].extend_from_slice(id);
                    (p, LONG_ID)
                };
                out.push(
                    p,
                    Row {
                        key,
                        amount,
                        day,
                        offset,
                    },
                );
                rows += 1;
            }
            if at_end {
                self.used = self.have;
                out.flush();
                return Ok(false);
            }
            // Keep the unfinished line and read more after it.
            i = i.min(self.have);
            self.buf.copy_within(i..self.have, 0);
            self.buf_pos += i as u64;
            self.have -= i;
            self.used = 0;
            if self.have == self.buf.len() {
                // One line longer than the buffer.
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = read_full_at(
                self.file,
                &mut self.buf[self.have..],
                self.buf_pos + self.have as u64,
            )?;
            if memchr::memchr2(b'"', b'\r', &self.buf[self.have..self.have + n]).is_some() {
                return Err(Stop::General);
            }
            self.have += n;
            if n == 0 {
                // The file ended (or shrank) early: parse what is left as the last line.
                self.len = self.buf_pos + self.have as u64;
            }
        }
    }
}

/// The first line start at or after `pos` (`pos` itself when a line starts there).
fn line_start_at_or_after(file: &File, pos: u64, len: u64) -> std::io::Result<u64> {
    if pos >= len {
        return Ok(len);
    }
    let mut buf = vec![0u8; 64 << 10];
    let mut at = pos - 1; // the body starts after the header's line end, so pos > 0
    loop {
        let n = read_full_at(file, &mut buf, at)?;
        if n == 0 {
            return Ok(len);
        }
        if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
            return Ok(at + i as u64 + 1);
        }
        at += n as u64;
    }
}

/// One line's member ID, day and amount; the error says why not (the caller adds where).
fn parse_line<'a>(
    line: &'a [u8],
    s: &Settings,
    date_cache: &mut ([u8; 10], i32),
) -> Result<(&'a [u8], i32, i64), String> {
    let [c_id, c_date, c_amount] = s.cols;
    let mut fields: [&[u8]; 3] = [&[], &[], &[]];
    let (mut from, mut index) = (0, 0);
    loop {
        // Fields are short: a plain loop beats setting up a vector search for each.
        let to = line[from..]
            .iter()
            .position(|&b| b == b',')
            .map_or(line.len(), |j| from + j);
        let field = &line[from..to];
        if index == c_id {
            fields[0] = field;
        }
        if index == c_date {
            fields[1] = field;
        }
        if index == c_amount {
            fields[2] = field;
        }
        if index == s.last_col {
            break;
        }
        if to == line.len() {
            return Err(format!(
                "has {} fields; expected at least {}",
                index + 1,
                s.last_col + 1
            ));
        }
        index += 1;
        from = to + 1;
    }
    let [id, date, amount] = fields.map(<[u8]>::trim_ascii);
    let day = if date.len() == 10 && date == date_cache.0 {
        Some(date_cache.1)
    } else {
        parse_date(date).map(|d| {
            let day = days(d);
            if date.len() == 10 {
                date_cache.0.copy_from_slice(date);
                date_cache.1 = day;
            }
            day
        })
    };
    match (id.is_empty(), day, parse_amount(amount)) {
        (false, Some(day), Some(amount)) => Ok((id, day, amount)),
        _ => Err(parse_row(id, date, amount).err().unwrap_or_default()),
    }
}

/// A member as summed within a partition.
struct Summed {
    /// The file position of its first row: the order of first appearance.
    first: u64,
    id: Id,
    last: i32,
    count: u64,
    sum: i64,
}

enum Id {
    Short([u64; 2]),
    Long(Box<[u8]>),
}

/// The members of one partition, summed over the rounds so far.
#[derive(Default)]
struct Table {
    short: FxHashMap<[u64; 2], u32>,
    long: FxHashMap<Box<[u8]>, u32>,
    members: Vec<Summed>,
}

impl Table {
    /// Adds partition `p` of one thread's round.
    fn add(&mut self, round: &Scatter, p: usize) {
        let mut long_ids = &round.long_ids[p][..];
        for row in &round.parts[p] {
            let first = round.base + u64::from(row.offset);
            let next = self.members.len() as u32;
            let slot = if row.key == LONG_ID {
                let (n, rest) = long_ids.split_at(4);
                let n = u32::from_le_bytes([n[0], n[1], n[2], n[3]]) as usize;
                let (id, rest) = rest.split_at(n);
                long_ids = rest;
                match self.long.get(id) {
                    Some(&slot) => slot,
                    None => {
                        self.long.insert(id.into(), next);
                        self.members.push(Summed::new(first, Id::Long(id.into())));
                        next
                    }
                }
            } else {
                let members = &mut self.members;
                *self.short.entry(row.key).or_insert_with(|| {
                    members.push(Summed::new(first, Id::Short(row.key)));
                    next
                })
            };
            let m = &mut self.members[slot as usize];
            // Rounds of later parts of the file can be summed before earlier ones.
            m.first = m.first.min(first);
            if row.day != AFTER_AS_OF {
                m.count += 1;
                m.sum = m.sum.saturating_add(row.amount);
                m.last = m.last.max(row.day);
            }
        }
    }
}

impl Summed {
    fn new(first: u64, id: Id) -> Self {
        Summed {
            first,
            id,
            last: i32::MIN,
            count: 0,
            sum: 0,
        }
    }
}

/// Every thread's members (each thread's sorted by first appearance), merged in order of
/// first appearance.
fn in_order(summed: Vec<Vec<Summed>>) -> MemberTotals {
    let n = summed.iter().map(Vec::len).sum();
    let mut heads: Vec<std::iter::Peekable<std::vec::IntoIter<Summed>>> =
        summed.into_iter().map(|v| v.into_iter().peekable()).collect();
    let merged = std::iter::from_fn(move || {
        let next = heads
            .iter_mut()
            .enumerate()
            .filter_map(|(t, h)| h.peek().map(|m| (m.first, t)))
            .min()?;
        heads[next.1].next()
    });

    let mut totals = MemberTotals {
        ids: MemberIds {
            text: String::new(),
            ends: Vec::with_capacity(n),
        },
        last: Vec::with_capacity(n),
        count: Vec::with_capacity(n),
        sum: Vec::with_capacity(n),
    };
    let mut text: Vec<u8> = Vec::with_capacity(n * 10);
    for s in merged {
        match &s.id {
            Id::Short(key) => {
                let bytes = unpack(key);
                text.extend_from_slice(&bytes[..usize::from(bytes[15]).min(15)]);
            }
            Id::Long(b) => text.extend_from_slice(b),
        }
        totals.ids.ends.push(text.len());
        totals.last.push(if s.count == 0 {
            Date::MIN
        } else {
            Date::from_julian_day(s.last).unwrap_or(Date::MIN)
        });
        totals.count.push(s.count);
        totals.sum.push(s.sum);
    }
    totals.ids.text = match String::from_utf8(text) {
        Ok(text) => text,
        // Not UTF-8: each ID on its own, as `load_csv` does (lossily).
        Err(e) => {
            let bytes = e.into_bytes();
            let mut text = String::with_capacity(bytes.len());
            let mut start = 0;
            for end in &mut totals.ids.ends {
                text.push_str(&String::from_utf8_lossy(&bytes[start..*end]));
                start = *end;
                *end = text.len();
            }
            text
        }
    };
    totals
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::load_csv;
    use proptest::prelude::*;
    use std::io::Write;

    const AS_OF: Date = time::macros::date!(2026 - 01 - 31);

    /// A file of its own under the system's temporary folder, removed when dropped.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn with(contents: &[u8]) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "huiyuan-totals-{}-{}.csv",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let mut f = File::create(&path).unwrap();
            f.write_all(contents).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Member IDs and each one's (last date, count, sum).
    type Answer = (Vec<String>, Vec<(Date, u64, i64)>);

    /// The general path's answer: `load_csv`, then each member's totals as `rfm` sums them.
    fn by_general_path(path: &Path) -> Result<Answer, String> {
        let loaded = load_csv(path).map_err(|e| e.to_string())?;
        let mut totals = vec![(Date::MIN, 0u64, 0i64); loaded.ids.len()];
        for ((&m, &d), &a) in loaded.member.iter().zip(&loaded.date).zip(&loaded.amount) {
            if d <= AS_OF {
                let t = &mut totals[m as usize];
                t.0 = t.0.max(d);
                t.1 += 1;
                t.2 = t.2.saturating_add(a);
            }
        }
        Ok((loaded.ids, totals))
    }

    fn by_this_reader(path: &Path, plan: ReadPlan) -> Result<Option<Answer>, String> {
        let Some(t) = member_totals_csv(path, AS_OF, plan).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let ids = (0..t.count.len()).map(|i| t.ids.get(i).to_owned()).collect();
        let rows = (0..t.count.len())
            .map(|i| (t.last[i], t.count[i], t.sum[i]))
            .collect();
        Ok(Some((ids, rows)))
    }

    fn tiny_plan() -> impl Strategy<Value = ReadPlan> {
        (1usize..4, 1usize..200, 1usize..40, 0u32..4).prop_map(|(threads, block, round_rows, bits)| {
            ReadPlan {
                threads,
                block,
                round_rows,
                partition_bits: Some(bits.max(1)),
            }
        })
    }

    /// Rows over a few members with IDs of 1 to 24 bytes (either side of the 16-byte packing
    /// limit), dates either side of the as-of date, amounts with 0–2 decimals, blank lines,
    /// extra columns in any order, with or without a final line end.
    fn csv_file() -> impl Strategy<Value = Vec<u8>> {
        let id = prop_oneof![
            "[a-z0-9]{1,15}",
            "[a-z0-9]{15,17}",
            "mem_[0-9A-Z]{20}",
            Just("會員一".to_owned()),
        ];
        let row = (
            prop::sample::select(vec![0usize, 1, 2, 3, 4, 5, 6, 7]),
            0i64..500,
            -100_000i64..100_000,
            0u8..3,
            prop::bool::weighted(0.05),
        );
        (
            prop::collection::vec(id, 1..8),
            prop::collection::vec(row, 0..120),
            prop::bool::ANY,
            prop::bool::ANY,
        )
            .prop_map(|(ids, rows, reorder, final_newline)| {
                let mut out = if reorder {
                    b"sku,amount,member_id,date\n".to_vec()
                } else {
                    b"member_id,date,amount\n".to_vec()
                };
                for (m, day, amount, decimals, blank) in rows {
                    if blank {
                        out.push(b'\n');
                    }
                    let id = &ids[m % ids.len()];
                    let date = time::macros::date!(2025 - 10 - 01) + time::Duration::days(day);
                    let amount = match decimals {
                        0 => format!("{}", amount / 100),
                        1 => format!("{}.{}", amount / 100, (amount % 100).abs() / 10),
                        _ => format!("{}.{:02}", amount / 100, (amount % 100).abs()),
                    };
                    let line = if reorder {
                        format!("SKU-{m},{amount},{id},{date}\n")
                    } else {
                        format!("{id},{date},{amount}\n")
                    };
                    out.extend_from_slice(line.as_bytes());
                }
                if !final_newline && out.ends_with(b"\n") {
                    out.pop();
                }
                out
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn equals_the_general_path(contents in csv_file(), plan in tiny_plan()) {
            let file = TempFile::with(&contents);
            let general = by_general_path(&file.0).unwrap();
            let fast = by_this_reader(&file.0, plan).unwrap().expect("a plain file is read here");
            prop_assert_eq!(&fast.0, &general.0);
            for (f, g) in fast.1.iter().zip(&general.1) {
                prop_assert_eq!(f.1, g.1);
                prop_assert_eq!(f.2, g.2);
                if g.1 > 0 {
                    prop_assert_eq!(f.0, g.0);
                }
            }
        }

        #[test]
        fn a_bad_row_is_named_by_its_line_like_the_general_path(
            contents in csv_file(),
            plan in tiny_plan(),
            at in 0usize..1000,
            bad in prop::sample::select(vec!["m1,2026-02-30,1", "m1,2026-01-01,1.234", ",2026-01-01,1", "m1,2026-01-01"]),
        ) {
            // The bad line goes after any line of the body (or first, or last).
            let mut lines: Vec<&[u8]> = contents.split(|&b| b == b'\n').collect();
            let at = 1 + at % lines.len();
            lines.insert(at, bad.as_bytes());
            let contents = lines.join(&b'\n');
            let file = TempFile::with(&contents);
            let general = by_general_path(&file.0).unwrap_err();
            let fast = by_this_reader(&file.0, plan).unwrap_err();
            prop_assert_eq!(fast, general);
        }
    }

    #[test]
    fn quotes_and_carriage_returns_go_to_the_general_reader() {
        for contents in [
            &b"member_id,date,amount\r\nm1,2026-01-01,1\r\n"[..],
            b"member_id,date,amount\nm1,2026-01-01,1\n\"m2\",2026-01-01,1\n",
            b"\"member_id\",date,amount\nm1,2026-01-01,1\n",
        ] {
            let file = TempFile::with(contents);
            let plan = ReadPlan {
                threads: 2,
                block: 8,
                round_rows: 1,
                partition_bits: Some(2),
            };
            assert!(by_this_reader(&file.0, plan).unwrap().is_none());
        }
        // A header and nothing else: no members.
        for contents in [&b"member_id,date,amount"[..], b"member_id,date,amount\n"] {
            let file = TempFile::with(contents);
            let (ids, _) = by_this_reader(&file.0, ReadPlan::default()).unwrap().unwrap();
            assert!(ids.is_empty());
        }
    }
}
