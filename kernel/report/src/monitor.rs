//! The paging documents (`dumppgd`, `dumppt`, `walk`, `checkmm`, `showmem`), the help and
//! the error answers, rendered as text or as one JSON document, over any [`PagingView`].
//!
//! Nothing here allocates or changes the paging state, and nothing panics on any input: a
//! page table that a corrupted entry places outside RAM is reported and not read (the
//! kernel's physical-memory access stops the machine on such an address).

use core::fmt::{self, Display, Write};

use mm::addr::{
    slot_base, Frame, LinearAddr, ENTRIES_PER_TABLE, LOW_MEM, NR_TASKS, PAGE_SIZE, PDES_PER_TASK,
    PDE_SPAN, TASK_SIZE,
};
use mm::check::{CheckInput, Level, Mismatch};
use mm::entry::{Entry, EntryFlags};
use mm::memory::fault_code;
use mm::view::PagingView;
use mm::walk::WalkStop;

use crate::command::{CommandName, Failure, MonitorError, ParseError, ParseFailure, PgdFilter};

/// The version of every JSON document's layout (the `schema` field); bumped on any
/// incompatible change, so scripts and the inspector can refuse what they do not know.
pub const SCHEMA: u32 = 1;
/// `checkmm` lists at most this many mismatches (a wrecked `mem_map` could yield one per
/// frame, thousands of lines over the serial link); the rest are counted.
pub const MAX_LISTED_MISMATCHES: u32 = 256;
/// `showmem` lists at most this many frames with a count above 1; the rest are counted.
pub const MAX_LISTED_SHARED: u32 = 64;

// ---------------------------------------------------------------------------------------
// JSON, by hand
// ---------------------------------------------------------------------------------------

/// A `fmt::Write` that escapes what goes through it for the inside of a JSON string.
struct Escaping<'a>(&'a mut dyn Write);

impl Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Runs of plain characters go out in one piece; only the few specials are split.
        let mut plain = 0;
        for (i, c) in s.char_indices() {
            let escaped = match c {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                c if (c as u32) < 0x20 => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            if escaped.is_empty() {
                write!(self.0, "\\u{:04x}", c as u32)?;
            } else {
                self.0.write_str(escaped)?;
            }
            plain = i + c.len_utf8();
        }
        self.0.write_str(&s[plain..])
    }
}

/// A streaming JSON writer: it places the commas and escapes the strings; the caller
/// opens and closes objects and arrays in order. Nesting deeper than 64 levels would
/// lose comma tracking; the monitor's documents are four deep at most.
pub struct Json<'w> {
    out: &'w mut dyn Write,
    /// Bit d set: the container at depth d already holds an item.
    filled: u64,
    depth: u32,
    /// A key was just written: the next value follows it without a comma.
    after_key: bool,
}

impl<'w> Json<'w> {
    pub fn new(out: &'w mut dyn Write) -> Json<'w> {
        Json {
            out,
            filled: 0,
            depth: 0,
            after_key: false,
        }
    }

    fn separate(&mut self) -> fmt::Result {
        if self.after_key {
            self.after_key = false;
            return Ok(());
        }
        let bit = 1u64 << self.depth.min(63);
        if self.filled & bit != 0 {
            self.out.write_char(',')?;
        }
        self.filled |= bit;
        Ok(())
    }
    fn open(&mut self, bracket: char) -> fmt::Result {
        self.separate()?;
        self.out.write_char(bracket)?;
        self.depth += 1;
        self.filled &= !(1u64 << self.depth.min(63));
        Ok(())
    }
    fn close(&mut self, bracket: char) -> fmt::Result {
        self.depth = self.depth.saturating_sub(1);
        self.out.write_char(bracket)
    }

    pub fn begin_object(&mut self) -> fmt::Result {
        self.open('{')
    }
    pub fn end_object(&mut self) -> fmt::Result {
        self.close('}')
    }
    pub fn begin_array(&mut self) -> fmt::Result {
        self.open('[')
    }
    pub fn end_array(&mut self) -> fmt::Result {
        self.close(']')
    }
    /// An object key; the next call writes its value.
    pub fn key(&mut self, key: &str) -> fmt::Result {
        self.separate()?;
        self.string_raw(key)?;
        self.out.write_char(':')?;
        self.after_key = true;
        Ok(())
    }
    /// An object key made by a `Display` (escaped like any string).
    pub fn key_display(&mut self, key: &dyn Display) -> fmt::Result {
        self.separate()?;
        self.out.write_char('"')?;
        write!(Escaping(self.out), "{key}")?;
        self.out.write_str("\":")?;
        self.after_key = true;
        Ok(())
    }
    fn string_raw(&mut self, s: &str) -> fmt::Result {
        self.out.write_char('"')?;
        Escaping(self.out).write_str(s)?;
        self.out.write_char('"')
    }
    pub fn string(&mut self, s: &str) -> fmt::Result {
        self.separate()?;
        self.string_raw(s)
    }
    /// Anything `Display` as a JSON string (escaped).
    pub fn display(&mut self, value: &dyn Display) -> fmt::Result {
        self.separate()?;
        self.out.write_char('"')?;
        write!(Escaping(self.out), "{value}")?;
        self.out.write_char('"')
    }
    /// An address or raw entry: the inspector convention, a `"0x%08x"` string.
    pub fn hex(&mut self, value: u32) -> fmt::Result {
        self.separate()?;
        write!(self.out, "\"{value:#010x}\"")
    }
    /// A 33-bit bound such as an exclusive range end (`"0x100000000"`).
    pub fn hex64(&mut self, value: u64) -> fmt::Result {
        self.separate()?;
        write!(self.out, "\"{value:#010x}\"")
    }
    pub fn uint(&mut self, value: u64) -> fmt::Result {
        self.separate()?;
        write!(self.out, "{value}")
    }
    /// A signed number (`times` may be -1).
    pub fn int(&mut self, value: i64) -> fmt::Result {
        self.separate()?;
        write!(self.out, "{value}")
    }
    pub fn field_int(&mut self, key: &str, value: i64) -> fmt::Result {
        self.key(key)?;
        self.int(value)
    }
    pub fn boolean(&mut self, value: bool) -> fmt::Result {
        self.separate()?;
        self.out.write_str(if value { "true" } else { "false" })
    }
    pub fn null(&mut self) -> fmt::Result {
        self.separate()?;
        self.out.write_str("null")
    }

    pub fn field_str(&mut self, key: &str, value: &str) -> fmt::Result {
        self.key(key)?;
        self.string(value)
    }
    pub fn field_display(&mut self, key: &str, value: &dyn Display) -> fmt::Result {
        self.key(key)?;
        self.display(value)
    }
    pub fn field_hex(&mut self, key: &str, value: u32) -> fmt::Result {
        self.key(key)?;
        self.hex(value)
    }
    pub fn field_uint(&mut self, key: &str, value: u64) -> fmt::Result {
        self.key(key)?;
        self.uint(value)
    }
    pub fn field_bool(&mut self, key: &str, value: bool) -> fmt::Result {
        self.key(key)?;
        self.boolean(value)
    }
    pub fn field_null(&mut self, key: &str) -> fmt::Result {
        self.key(key)?;
        self.null()
    }
    pub fn field_opt_hex(&mut self, key: &str, value: Option<u32>) -> fmt::Result {
        self.key(key)?;
        match value {
            Some(v) => self.hex(v),
            None => self.null(),
        }
    }
    pub fn field_opt_uint(&mut self, key: &str, value: Option<u64>) -> fmt::Result {
        self.key(key)?;
        match value {
            Some(v) => self.uint(v),
            None => self.null(),
        }
    }
    pub fn field_opt_bool(&mut self, key: &str, value: Option<bool>) -> fmt::Result {
        self.key(key)?;
        match value {
            Some(v) => self.boolean(v),
            None => self.null(),
        }
    }

    /// Opens a monitor document: `{"command":NAME,"schema":SCHEMA`; close it with
    /// [`end_document`](Self::end_document).
    pub fn begin_document(&mut self, command: CommandName) -> fmt::Result {
        self.begin_object()?;
        self.field_str("command", command.name())?;
        self.field_uint("schema", u64::from(SCHEMA))
    }
    /// Closes the document and ends the line.
    pub fn end_document(&mut self) -> fmt::Result {
        self.end_object()?;
        self.out.write_char('\n')
    }
}

// ---------------------------------------------------------------------------------------
// Help and errors
// ---------------------------------------------------------------------------------------

/// `help`: every command with its arguments. `unknown`: the word that was not a command.
pub fn help(json: bool, unknown: Option<&str>, out: &mut dyn Write) -> fmt::Result {
    if json {
        let mut j = Json::new(out);
        j.begin_document(CommandName::Help)?;
        if let Some(word) = unknown {
            j.key("error")?;
            write_error_object(&mut j, CommandName::Help, &ParseError::UnknownCommand(word))?;
        }
        j.key("commands")?;
        j.begin_array()?;
        for c in CommandName::ALL {
            j.begin_object()?;
            j.field_str("name", c.name())?;
            j.field_str("usage", c.usage())?;
            j.field_str("summary", c.summary())?;
            j.end_object()?;
        }
        j.end_array()?;
        return j.end_document();
    }
    if let Some(word) = unknown {
        writeln!(out, "unknown command '{word}'")?;
    }
    writeln!(
        out,
        "monitor commands (numbers: decimal or 0x hex; --json on any command prints one JSON document):"
    )?;
    for c in CommandName::ALL {
        writeln!(out, "  {}", c.usage())?;
        writeln!(out, "      {}", c.summary())?;
    }
    Ok(())
}

fn write_error_object(j: &mut Json<'_>, command: CommandName, error: &dyn Failure) -> fmt::Result {
    j.begin_object()?;
    j.field_str("kind", error.kind())?;
    j.field_display("message", &error)?;
    j.field_str("usage", command.usage())?;
    j.end_object()
}

/// An error answer: `{"command":..,"schema":..,"error":{"kind","message","usage"}}`, or
/// the message and (for bad arguments) the usage line.
pub fn error(
    json: bool,
    command: CommandName,
    error: &dyn Failure,
    out: &mut dyn Write,
) -> fmt::Result {
    if json {
        let mut j = Json::new(out);
        j.begin_document(command)?;
        j.key("error")?;
        write_error_object(&mut j, command, error)?;
        return j.end_document();
    }
    writeln!(out, "{error}")?;
    if error.shows_usage() {
        writeln!(out, "usage: {}", command.usage())?;
    }
    Ok(())
}

/// The answer to a refused command line: the help for an unknown command, else the error
/// and the usage line.
pub fn parse_failure(failure: &ParseFailure<'_>, out: &mut dyn Write) -> fmt::Result {
    match failure.error {
        ParseError::UnknownCommand(word) => help(failure.json, Some(word), out),
        e => error(failure.json, e.command(), &e, out),
    }
}

// ---------------------------------------------------------------------------------------
// Shared pieces of the views
// ---------------------------------------------------------------------------------------

/// Which task lives in which slot: the monitor's only view of the task table.
pub trait TaskSlots {
    /// The pid of the task in `slot`, if any (slot 0: the kernel, pid 0).
    fn pid_in_slot(&self, slot: usize) -> Option<u32>;
    /// The slot of the task with `pid`.
    fn slot_of_pid(&self, pid: u32) -> Option<usize> {
        (0..NR_TASKS).find(|&slot| self.pid_in_slot(slot) == Some(pid))
    }
}

/// Who owns a slot, for the text views.
struct Owner(usize, Option<u32>);

impl Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Owner(0, _) => f.write_str("kernel"),
            Owner(slot, Some(pid)) => write!(f, "pid {pid} (slot {slot})"),
            Owner(slot, None) => write!(f, "slot {slot}, no task"),
        }
    }
}

/// Pads a `Display` that ignores width (like [`Entry::describe`]) to `width` columns,
/// through a small stack buffer; longer text goes out unpadded.
pub struct Pad<'a>(pub &'a dyn Display, pub usize);

impl Display for Pad<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Buffer {
            bytes: [u8; 64],
            len: usize,
        }
        impl Write for Buffer {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                let end = self.len + s.len();
                let room = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
                room.copy_from_slice(s.as_bytes());
                self.len = end;
                Ok(())
            }
        }
        let mut buffer = Buffer {
            bytes: [0; 64],
            len: 0,
        };
        if write!(buffer, "{}", self.0).is_err() {
            return write!(f, "{}", self.0);
        }
        // Only whole `write_str` pieces of valid UTF-8 were copied in.
        let text = core::str::from_utf8(&buffer.bytes[..buffer.len]).map_err(|_| fmt::Error)?;
        write!(f, "{text:<width$}", width = self.1)
    }
}

/// Whether the kernel may read the page table a present entry names: only frames inside
/// RAM are (the kernel's physical access stops the machine on anything else, and a
/// corrupted or hand-edited entry can name any frame).
fn table_readable<V: PagingView + ?Sized>(view: &V, table: Frame) -> bool {
    table.as_u32() < view.high_memory()
}

/// Present entries of the page table a present directory entry names; `None` when the
/// table lies outside RAM and was not read.
fn present_ptes<V: PagingView + ?Sized>(view: &V, pde: Entry) -> Option<u32> {
    if !table_readable(view, pde.frame()) {
        return None;
    }
    Some(
        (0..ENTRIES_PER_TABLE)
            .filter(|&i| view.read_entry(pde.frame(), i).is_present())
            .count() as u32,
    )
}

/// The last byte of the 4 MiB directory entry `index` covers.
fn pde_last(index: usize) -> u32 {
    LinearAddr::from_indices(index, 0).as_u32() + (PDE_SPAN - 1)
}

/// Writes the common fields of an entry: raw, decoded flags, present.
fn entry_fields(j: &mut Json<'_>, entry: Entry) -> fmt::Result {
    j.field_hex("raw", entry.raw())?;
    j.field_display("flags", &entry.describe())?;
    j.field_bool("present", entry.is_present())
}

/// The `mem_map` count for the text views: a number, or why there is none.
struct CountText(Frame, Option<u8>, u32);

impl Display for CountText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CountText(_, Some(count), _) => write!(f, "{count}"),
            CountText(frame, None, _) if frame.as_u32() < LOW_MEM => {
                f.write_str("- (below LOW_MEM, not counted)")
            }
            CountText(_, None, high) => write!(f, "- (at/above HIGH_MEMORY {high:#010x})"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// dumppgd
// ---------------------------------------------------------------------------------------

/// The flag bits that decide whether adjacent directory entries merge: accessed and
/// dirty change as the machine runs and say nothing about the mapping.
const MERGE_IGNORED: EntryFlags = EntryFlags::ACCESSED.union(EntryFlags::DIRTY);

/// Adjacent selected directory entries shown as one line.
struct Run {
    first: usize,
    last: usize,
    /// The flag bits every entry of the run has (so A shows only when all are accessed).
    common: u32,
    first_entry: Entry,
    last_table: Frame,
    /// Each table of the run lies in the frame after the previous one's.
    contiguous: bool,
    /// Present PTEs over the run; `None` if a table lies outside RAM.
    present_ptes: Option<u32>,
}

/// Calls `f` with each run of the selected present directory entries, in index order.
fn for_each_run<V: PagingView + ?Sized>(
    view: &V,
    selected: &dyn Fn(usize, Entry) -> bool,
    merge: bool,
    f: &mut dyn FnMut(&Run) -> fmt::Result,
) -> fmt::Result {
    let mut run: Option<Run> = None;
    for index in 0..ENTRIES_PER_TABLE {
        let pde = view.pde(index);
        if !pde.is_present() || !selected(index, pde) {
            continue;
        }
        let ptes = present_ptes(view, pde);
        if let Some(r) = run.as_mut() {
            let alike = merge
                && r.last + 1 == index
                && r.last / PDES_PER_TASK == index / PDES_PER_TASK
                && r.first_entry.without_flags(MERGE_IGNORED).flags()
                    == pde.without_flags(MERGE_IGNORED).flags()
                && r.present_ptes.is_some()
                && ptes.is_some();
            if alike {
                r.last = index;
                r.common &= pde.flags().bits();
                r.contiguous &=
                    pde.frame().as_u32() == r.last_table.as_u32().wrapping_add(PAGE_SIZE);
                r.last_table = pde.frame();
                r.present_ptes = r.present_ptes.zip(ptes).map(|(a, b)| a + b);
                continue;
            }
            f(r)?;
        }
        run = Some(Run {
            first: index,
            last: index,
            common: pde.flags().bits(),
            first_entry: pde,
            last_table: pde.frame(),
            contiguous: true,
            present_ptes: ptes,
        });
    }
    match run {
        Some(r) => f(&r),
        None => Ok(()),
    }
}

/// `dumppgd`: the present page-directory entries that pass `filter`.
pub fn dumppgd<V: PagingView + ?Sized>(
    view: &V,
    tasks: &dyn TaskSlots,
    filter: &PgdFilter,
    json: bool,
    out: &mut dyn Write,
) -> fmt::Result {
    let slot = match filter.task {
        None => None,
        Some(pid) => match tasks.slot_of_pid(pid) {
            Some(slot) => Some(slot),
            None => {
                return error(
                    json,
                    CommandName::DumpPgd,
                    &MonitorError::NoSuchTask { pid },
                    out,
                )
            }
        },
    };
    let selected = |index: usize, pde: Entry| {
        slot.is_none_or(|s| index / PDES_PER_TASK == s)
            && filter
                .range
                .is_none_or(|r| r.meets(LinearAddr::from_indices(index, 0).as_u32(), PDE_SPAN))
            && filter.user.is_none_or(|u| pde.is_user() == u)
            && filter.writable.is_none_or(|w| pde.is_writable() == w)
    };
    let present = (0..ENTRIES_PER_TABLE)
        .filter(|&i| view.pde(i).is_present())
        .count();
    let not_present_nonzero = (0..ENTRIES_PER_TABLE)
        .filter(|&i| view.pde(i).is_swap())
        .count();
    let merge = !filter.all;

    if json {
        let mut j = Json::new(out);
        j.begin_document(CommandName::DumpPgd)?;
        j.field_hex("pg_dir", view.pg_dir().as_u32())?;
        j.field_uint("present", present as u64)?;
        j.field_uint("not_present_nonzero", not_present_nonzero as u64)?;
        j.key("filter")?;
        j.begin_object()?;
        j.field_opt_uint("task", filter.task.map(u64::from))?;
        j.field_opt_uint("slot", slot.map(|s| s as u64))?;
        j.key("range")?;
        match filter.range {
            Some(r) => {
                j.begin_object()?;
                j.field_hex("start", r.start)?;
                j.key("end")?;
                j.hex64(r.end)?;
                j.end_object()?;
            }
            None => j.null()?,
        }
        j.field_opt_bool("user", filter.user)?;
        j.field_opt_bool("writable", filter.writable)?;
        j.field_bool("merged", merge)?;
        j.end_object()?;
        j.key("entries")?;
        j.begin_array()?;
        let mut shown = 0u64;
        for index in 0..ENTRIES_PER_TABLE {
            let pde = view.pde(index);
            if !pde.is_present() || !selected(index, pde) {
                continue;
            }
            shown += 1;
            let slot = index / PDES_PER_TASK;
            j.begin_object()?;
            j.field_uint("index", index as u64)?;
            j.field_hex("start", LinearAddr::from_indices(index, 0).as_u32())?;
            j.field_hex("last", pde_last(index))?;
            j.field_hex("table", pde.frame().as_u32())?;
            entry_fields(&mut j, pde)?;
            j.field_bool("user", pde.is_user())?;
            j.field_bool("writable", pde.is_writable())?;
            j.field_bool("accessed", pde.flags().contains(EntryFlags::ACCESSED))?;
            j.field_bool("table_readable", table_readable(view, pde.frame()))?;
            j.field_opt_uint("present_ptes", present_ptes(view, pde).map(u64::from))?;
            j.field_uint("slot", slot as u64)?;
            j.field_opt_uint("pid", tasks.pid_in_slot(slot).map(u64::from))?;
            j.end_object()?;
        }
        j.end_array()?;
        j.field_uint("shown", shown)?;
        j.key("runs")?;
        j.begin_array()?;
        for_each_run(view, &selected, merge, &mut |r| {
            j.begin_object()?;
            j.field_uint("first_index", r.first as u64)?;
            j.field_uint("last_index", r.last as u64)?;
            j.field_hex("start", LinearAddr::from_indices(r.first, 0).as_u32())?;
            j.field_hex("last", pde_last(r.last))?;
            j.field_display("flags", &Entry(r.common | 1).describe())?;
            j.field_opt_uint("present_ptes", r.present_ptes.map(u64::from))?;
            j.end_object()
        })?;
        j.end_array()?;
        return j.end_document();
    }

    write!(
        out,
        "page directory at {}: {present} present entries",
        view.pg_dir()
    )?;
    if not_present_nonzero > 0 {
        write!(
            out,
            ", {not_present_nonzero} not present but not zero (corrupt?)"
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<9}  {:<21}  {:<22}  {:<10}  {:>5}  {:<22}  flags",
        "index", "linear range", "page table", "raw", "PTEs", "owner"
    )?;
    let mut lines = 0u32;
    for_each_run(view, &selected, merge, &mut |r| {
        lines += 1;
        let slot = r.first / PDES_PER_TASK;
        let start = LinearAddr::from_indices(r.first, 0).as_u32();
        let last = pde_last(r.last);
        let owner = Owner(slot, tasks.pid_in_slot(slot));
        if r.first == r.last {
            write!(
                out,
                "{:<9}  {start:#010x}-{last:#010x}  {}  {:#010x}  ",
                r.first,
                Pad(&r.first_entry.frame(), 22),
                r.first_entry.raw()
            )?;
        } else {
            let indices = Indices(r.first, r.last);
            let tables = Tables {
                first: r.first_entry.frame(),
                last: r.last_table,
                count: r.last - r.first + 1,
                contiguous: r.contiguous,
            };
            let merged = Merged(r.last - r.first + 1);
            write!(
                out,
                "{}  {start:#010x}-{last:#010x}  {}  {}  ",
                Pad(&indices, 9),
                Pad(&tables, 22),
                Pad(&merged, 10),
            )?;
        }
        match r.present_ptes {
            Some(n) => write!(out, "{n:>5}")?,
            None => write!(out, "{:>5}", "?")?,
        }
        write!(
            out,
            "  {}  {}",
            Pad(&owner, 22),
            Entry(r.common | 1).describe()
        )?;
        if r.present_ptes.is_none() {
            write!(out, "  (page table beyond HIGH_MEMORY, not read)")?;
        }
        writeln!(out)
    })?;
    if lines == 0 {
        writeln!(out, "(no present entry matches)")?;
    }
    Ok(())
}

struct Indices(usize, usize);
impl Display for Indices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}
/// The page tables of a merged run: a range when they lie one after the other (the
/// identity map's do), else the first and how many more.
struct Tables {
    first: Frame,
    last: Frame,
    count: usize,
    contiguous: bool,
}
impl Display for Tables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.contiguous {
            write!(f, "{}..{}", self.first, self.last)
        } else {
            write!(f, "{} +{} more", self.first, self.count - 1)
        }
    }
}
struct Merged(usize);
impl Display for Merged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({} PDEs)", self.0)
    }
}

// ---------------------------------------------------------------------------------------
// dumppt
// ---------------------------------------------------------------------------------------

/// `dumppt`: the non-empty entries of the page table directory entry `index` names.
pub fn dumppt<V: PagingView + ?Sized>(
    view: &V,
    tasks: &dyn TaskSlots,
    index: usize,
    json: bool,
    out: &mut dyn Write,
) -> fmt::Result {
    let index = index.min(ENTRIES_PER_TABLE - 1);
    let pde = view.pde(index);
    let slot = index / PDES_PER_TASK;
    let readable = pde.is_present() && table_readable(view, pde.frame());
    let table = pde.frame();
    let high = view.high_memory();
    let mut present = 0u64;
    let mut swap = 0u64;
    let mut count_kinds = |pte: Entry| {
        if pte.is_present() {
            present += 1;
        } else if pte.is_swap() {
            swap += 1;
        }
    };

    if json {
        let mut j = Json::new(out);
        j.begin_document(CommandName::DumpPt)?;
        j.field_uint("index", index as u64)?;
        j.field_hex("start", LinearAddr::from_indices(index, 0).as_u32())?;
        j.field_hex("last", pde_last(index))?;
        j.field_uint("slot", slot as u64)?;
        j.field_opt_uint("pid", tasks.pid_in_slot(slot).map(u64::from))?;
        j.key("pde")?;
        j.begin_object()?;
        entry_fields(&mut j, pde)?;
        j.end_object()?;
        j.field_opt_hex("table", pde.is_present().then_some(table.as_u32()))?;
        j.field_bool("table_readable", readable)?;
        j.key("entries")?;
        j.begin_array()?;
        if readable {
            for i in 0..ENTRIES_PER_TABLE {
                let pte = view.read_entry(table, i);
                if pte.raw() == 0 {
                    continue;
                }
                count_kinds(pte);
                j.begin_object()?;
                j.field_uint("index", i as u64)?;
                j.field_hex("linear", LinearAddr::from_indices(index, i).as_u32())?;
                entry_fields(&mut j, pte)?;
                j.field_opt_uint(
                    "swap_slot",
                    pte.is_swap().then(|| u64::from(pte.swap_slot())),
                )?;
                let frame = pte.is_present().then(|| pte.frame());
                j.field_opt_hex("frame", frame.map(Frame::as_u32))?;
                j.field_opt_uint("count", frame.and_then(|f| view.count(f)).map(u64::from))?;
                j.end_object()?;
            }
        }
        j.end_array()?;
        j.field_uint("present", present)?;
        j.field_uint("swap", swap)?;
        return j.end_document();
    }

    write!(
        out,
        "PDE {index} (linear {:#010x}-{:#010x}, {}): raw {:#010x} {}",
        LinearAddr::from_indices(index, 0).as_u32(),
        pde_last(index),
        Owner(slot, tasks.pid_in_slot(slot)),
        pde.raw(),
        pde.describe()
    )?;
    if !pde.is_present() {
        return writeln!(out, ": no page table");
    }
    if !readable {
        return writeln!(
            out,
            ": page table {table} lies at/above HIGH_MEMORY {high:#010x}, not read"
        );
    }
    writeln!(out, ", page table {table}")?;
    writeln!(
        out,
        "{:>5}  {:<10}  {:<10}  {:<10}  {:>5}  flags",
        "index", "linear", "raw", "frame", "count"
    )?;
    for i in 0..ENTRIES_PER_TABLE {
        let pte = view.read_entry(table, i);
        if pte.raw() == 0 {
            continue;
        }
        count_kinds(pte);
        write!(
            out,
            "{i:>5}  {}  {:#010x}  ",
            LinearAddr::from_indices(index, i),
            pte.raw()
        )?;
        if pte.is_present() {
            match view.count(pte.frame()) {
                Some(c) => write!(out, "{}  {c:>5}", pte.frame())?,
                None => write!(out, "{}  {:>5}", pte.frame(), "-")?,
            }
        } else {
            write!(out, "{:<10}  {:>5}", "-", "-")?;
        }
        writeln!(out, "  {}", pte.describe())?;
    }
    writeln!(
        out,
        "{present} present, {swap} swap entries, {} empty",
        ENTRIES_PER_TABLE as u64 - present - swap
    )
}

// ---------------------------------------------------------------------------------------
// walk
// ---------------------------------------------------------------------------------------

/// `walk`: the software walk of `addr` (linear; with `task`, an offset in that task's
/// segment).
pub fn walk<V: PagingView + ?Sized>(
    view: &V,
    tasks: &dyn TaskSlots,
    addr: u32,
    task: Option<u32>,
    json: bool,
    out: &mut dyn Write,
) -> fmt::Result {
    let in_task = match task {
        None => None,
        Some(pid) => match tasks.slot_of_pid(pid) {
            Some(slot) if addr < TASK_SIZE => Some((pid, slot)),
            Some(_) => {
                // The parser refuses this; a caller building the command by hand may not.
                let e = MonitorError::OffsetBeyondSegment { offset: addr };
                return error(json, CommandName::Walk, &e, out);
            }
            None => {
                return error(
                    json,
                    CommandName::Walk,
                    &MonitorError::NoSuchTask { pid },
                    out,
                )
            }
        },
    };
    let linear = match in_task {
        Some((_, slot)) => LinearAddr::new(slot_base(slot).as_u32() + addr),
        None => LinearAddr::new(addr),
    };
    let pde_index = linear.dir_index();
    let pde = view.pde(pde_index);
    // Walk only through a table inside RAM: `Mm::walk` reads whatever the entry names.
    let table_ok = !pde.is_present() || table_readable(view, pde.frame());
    let w = table_ok.then(|| mm::walk::walk(view, linear));
    let pte = w.and_then(|w| w.pte);
    let frame = w.and_then(|w| w.frame);
    let physical = w.and_then(|w| w.physical());
    let (level, reason, swap_slot) = match w.map(|w| w.stop) {
        None => ("pde", Some("table_beyond_memory"), None),
        Some(None) => ("", None, None),
        Some(Some(WalkStop::NoPageTable)) => ("pde", Some("no_page_table"), None),
        Some(Some(WalkStop::NotMapped)) => ("pte", Some("not_mapped"), None),
        Some(Some(WalkStop::SwappedOut { slot })) => ("pte", Some("swapped_out"), Some(slot)),
    };

    if json {
        let mut j = Json::new(out);
        j.begin_document(CommandName::Walk)?;
        j.field_hex("linear", linear.as_u32())?;
        j.key("task")?;
        match in_task {
            Some((pid, slot)) => {
                j.begin_object()?;
                j.field_uint("pid", u64::from(pid))?;
                j.field_uint("slot", slot as u64)?;
                j.field_hex("offset", addr)?;
                j.end_object()?;
            }
            None => j.null()?,
        }
        j.key("pde")?;
        j.begin_object()?;
        j.field_uint("index", pde_index as u64)?;
        entry_fields(&mut j, pde)?;
        j.end_object()?;
        j.field_opt_hex("table", pde.is_present().then(|| pde.frame().as_u32()))?;
        j.key("pte")?;
        j.begin_object()?;
        j.field_uint("index", linear.table_index() as u64)?;
        match pte {
            Some(pte) => entry_fields(&mut j, pte)?,
            None => {
                j.field_null("raw")?;
                j.field_null("flags")?;
                j.field_null("present")?;
            }
        }
        j.end_object()?;
        j.field_opt_hex("frame", frame.map(|(f, _)| f.as_u32()))?;
        j.field_opt_uint("count", frame.and_then(|(_, c)| c).map(u64::from))?;
        j.field_opt_hex("physical", physical)?;
        j.key("stop")?;
        match reason {
            Some(reason) => {
                j.begin_object()?;
                j.field_str("level", level)?;
                j.field_str("reason", reason)?;
                j.field_opt_uint("swap_slot", swap_slot.map(u64::from))?;
                j.end_object()?;
            }
            None => j.null()?,
        }
        return j.end_document();
    }

    write!(out, "walk {linear}")?;
    if let Some((pid, slot)) = in_task {
        write!(out, " (pid {pid} offset {addr:#010x}, slot {slot})")?;
    }
    writeln!(out)?;
    write!(
        out,
        "  PDE {pde_index:<4}  raw {:#010x}  {}",
        pde.raw(),
        pde.describe()
    )?;
    if !pde.is_present() {
        writeln!(out)?;
        return writeln!(out, "  stops at the PDE: not present, no page table");
    }
    writeln!(out, "  -> page table {}", pde.frame())?;
    if !table_ok {
        return writeln!(
            out,
            "  stops at the PDE: its page table lies at/above HIGH_MEMORY {:#010x} (corrupt entry), not read",
            view.high_memory()
        );
    }
    let pte = pte.unwrap_or(Entry::EMPTY);
    write!(
        out,
        "  PTE {:<4}  raw {:#010x}  {}",
        linear.table_index(),
        pte.raw(),
        pte.describe()
    )?;
    match (frame, swap_slot) {
        (Some((f, count)), _) => {
            writeln!(
                out,
                "  -> frame {f}, mem_map count {}",
                CountText(f, count, view.high_memory())
            )?;
            writeln!(out, "  physical {:#010x}", physical.unwrap_or(0))
        }
        (None, Some(slot)) => {
            writeln!(out)?;
            writeln!(out, "  stops at the PTE: swap entry (slot {slot})")
        }
        (None, None) => {
            writeln!(out)?;
            writeln!(out, "  stops at the PTE: not mapped (zero entry)")
        }
    }
}

// ---------------------------------------------------------------------------------------
// checkmm
// ---------------------------------------------------------------------------------------

/// One mismatch as a JSON object: `kind` (the variant in snake_case), its fields, and
/// `message` (the text form).
pub fn mismatch_json(j: &mut Json<'_>, m: &Mismatch) -> fmt::Result {
    j.begin_object()?;
    match *m {
        Mismatch::Count {
            frame,
            expected,
            found,
        } => {
            j.field_str("kind", "count")?;
            j.field_hex("frame", frame.as_u32())?;
            j.field_uint("expected", u64::from(expected))?;
            j.field_uint("found", u64::from(found))?;
        }
        Mismatch::BadFrame { linear, frame } => {
            j.field_str("kind", "bad_frame")?;
            j.field_hex("linear", linear.as_u32())?;
            j.field_hex("frame", frame.as_u32())?;
        }
        Mismatch::FreeCount { counter, counted } => {
            j.field_str("kind", "free_count")?;
            j.field_uint("counter", u64::from(counter))?;
            j.field_uint("counted", u64::from(counted))?;
        }
        Mismatch::FreeIndex { frame } => {
            j.field_str("kind", "free_index")?;
            j.field_hex("frame", frame.as_u32())?;
        }
        Mismatch::TableOwnership {
            frame,
            owners,
            mappings,
        } => {
            j.field_str("kind", "table_ownership")?;
            j.field_hex("frame", frame.as_u32())?;
            j.field_uint("owners", u64::from(owners))?;
            j.field_uint("mappings", u64::from(mappings))?;
        }
        Mismatch::WritableShared {
            linear,
            frame,
            count,
        } => {
            j.field_str("kind", "writable_shared")?;
            j.field_hex("linear", linear.as_u32())?;
            j.field_hex("frame", frame.as_u32())?;
            j.field_uint("count", u64::from(count))?;
        }
        Mismatch::DeadSlot {
            pde_index,
            slot,
            entry,
        } => {
            j.field_str("kind", "dead_slot")?;
            j.field_uint("pde_index", pde_index as u64)?;
            j.field_uint("slot", slot as u64)?;
            j.field_hex("entry", entry.raw())?;
        }
        Mismatch::KernelMapping {
            linear,
            expected,
            found,
        } => {
            j.field_str("kind", "kernel_mapping")?;
            j.field_hex("linear", linear.as_u32())?;
            j.field_hex("expected", expected.raw())?;
            j.field_hex("found", found.raw())?;
        }
        Mismatch::EntryFlags {
            linear,
            entry,
            level,
        } => {
            j.field_str("kind", "entry_flags")?;
            j.field_hex("linear", linear.as_u32())?;
            j.field_hex("entry", entry.raw())?;
            j.field_str(
                "level",
                match level {
                    Level::Directory => "directory",
                    Level::Table => "table",
                },
            )?;
        }
        Mismatch::SwapSlotNotInUse {
            linear,
            entry,
            slot,
        } => {
            j.field_str("kind", "swap_slot_not_in_use")?;
            j.field_hex("linear", linear.as_u32())?;
            j.field_hex("entry", entry.raw())?;
            j.field_uint("slot", u64::from(slot))?;
        }
        Mismatch::SwapSlotShared { linear, slot } => {
            j.field_str("kind", "swap_slot_shared")?;
            j.field_hex("linear", linear.as_u32())?;
            j.field_uint("slot", u64::from(slot))?;
        }
        Mismatch::SwapSlotLeaked { slot } => {
            j.field_str("kind", "swap_slot_leaked")?;
            j.field_uint("slot", u64::from(slot))?;
        }
        Mismatch::UnexpectedSwapEntry { linear, entry } => {
            j.field_str("kind", "unexpected_swap_entry")?;
            j.field_hex("linear", linear.as_u32())?;
            j.field_hex("entry", entry.raw())?;
        }
        Mismatch::BadKernelReference { frame } => {
            j.field_str("kind", "bad_kernel_reference")?;
            j.field_hex("frame", frame.as_u32())?;
        }
    }
    j.field_display("message", m)?;
    j.end_object()
}

/// `checkmm`: runs [`Mm::check_mm`] with the caller's `scratch` (one `u16` per frame
/// `mem_map` covers) and reports every mismatch (up to [`MAX_LISTED_MISMATCHES`]).
pub fn checkmm<V: PagingView + ?Sized>(
    view: &V,
    input: &CheckInput<'_>,
    scratch: &mut [u16],
    json: bool,
    out: &mut dyn Write,
) -> fmt::Result {
    let needed = view.nr_pages();
    if scratch.len() < needed {
        let e = MonitorError::ScratchTooSmall {
            needed,
            given: scratch.len(),
        };
        return error(json, CommandName::CheckMm, &e, out);
    }
    let mut listed = 0u32;
    // check_mm reports through a closure that returns nothing: keep the first write error.
    let mut result = Ok(());

    if json {
        let mut j = Json::new(out);
        j.begin_document(CommandName::CheckMm)?;
        j.key("mismatches")?;
        j.begin_array()?;
        let summary = mm::check::check_mm(view, input, scratch, &mut |m| {
            if listed < MAX_LISTED_MISMATCHES && result.is_ok() {
                result = mismatch_json(&mut j, &m);
            }
            listed += 1;
        });
        result?;
        j.end_array()?;
        j.field_uint(
            "omitted",
            u64::from(summary.mismatches.saturating_sub(MAX_LISTED_MISMATCHES)),
        )?;
        j.field_bool("ok", summary.is_clean())?;
        j.field_uint("mismatch_count", u64::from(summary.mismatches))?;
        j.field_uint("frames", u64::from(summary.frames))?;
        j.field_uint("present_pdes", u64::from(summary.present_pdes))?;
        j.field_uint("present_ptes", u64::from(summary.present_ptes))?;
        j.field_uint("kernel_refs", u64::from(summary.kernel_refs))?;
        j.field_uint("swap_entries", u64::from(summary.swap_entries))?;
        return j.end_document();
    }

    let summary = mm::check::check_mm(view, input, scratch, &mut |m| {
        if listed < MAX_LISTED_MISMATCHES && result.is_ok() {
            result = writeln!(out, "checkmm: {m}");
        }
        listed += 1;
    });
    result?;
    if summary.mismatches > MAX_LISTED_MISMATCHES {
        writeln!(
            out,
            "checkmm: ... and {} more mismatches",
            summary.mismatches - MAX_LISTED_MISMATCHES
        )?;
    }
    writeln!(out, "checkmm: {summary}")
}

// ---------------------------------------------------------------------------------------
// showmem
// ---------------------------------------------------------------------------------------

/// Whether slot `slot` holds any directory entry (a task's, or a leftover).
fn slot_has_tables<V: PagingView + ?Sized>(view: &V, slot: usize) -> bool {
    let first = slot_base(slot).dir_index();
    (first..first + PDES_PER_TASK).any(|d| view.pde(d).raw() != 0)
}

/// `showmem`: frame totals, pages per task slot (1..63: those with a task or with page
/// tables), and the frames with a count above 1.
pub fn showmem<V: PagingView + ?Sized>(
    view: &V,
    tasks: &dyn TaskSlots,
    json: bool,
    out: &mut dyn Write,
) -> fmt::Result {
    let t = mm::walk::frame_totals(view);
    let used = t.paging_frames - t.free_frames.min(t.paging_frames);
    let listed_slot =
        |slot: usize| tasks.pid_in_slot(slot).is_some() || slot_has_tables(view, slot);
    let start = view.start_mem();
    let shared = || {
        (0..view.nr_pages()).filter_map(move |i| {
            let frame = view.frame_of(i);
            let count = view.map_count(i)?;
            (count > 1 && frame.as_u32() >= start).then_some((frame, count))
        })
    };
    let omitted = t.shared_frames.saturating_sub(MAX_LISTED_SHARED);

    if json {
        let mut j = Json::new(out);
        j.begin_document(CommandName::ShowMem)?;
        j.field_hex("high_memory", view.high_memory())?;
        j.field_hex("start_mem", start)?;
        j.field_uint("paging_frames", u64::from(t.paging_frames))?;
        j.field_uint("free", u64::from(t.free_frames))?;
        j.field_uint("used", u64::from(used))?;
        j.field_uint("shared_frames", u64::from(t.shared_frames))?;
        j.field_uint("shared_references", u64::from(t.shared_references))?;
        j.field_uint("reserved", u64::from(t.reserved_frames))?;
        j.key("tasks")?;
        j.begin_array()?;
        for slot in (1..NR_TASKS).filter(|&s| listed_slot(s)) {
            let u = mm::walk::slot_usage(view, slot);
            j.begin_object()?;
            j.field_opt_uint("pid", tasks.pid_in_slot(slot).map(u64::from))?;
            j.field_uint("slot", slot as u64)?;
            j.field_uint("pages", u64::from(u.pages))?;
            j.field_uint("shared_pages", u64::from(u.shared_pages))?;
            j.field_uint("page_tables", u64::from(u.page_tables))?;
            j.field_uint("swapped", u64::from(u.swapped))?;
            j.end_object()?;
        }
        j.end_array()?;
        j.key("shared")?;
        j.begin_array()?;
        for (frame, count) in shared().take(MAX_LISTED_SHARED as usize) {
            j.begin_object()?;
            j.field_hex("frame", frame.as_u32())?;
            j.field_uint("count", u64::from(count))?;
            j.end_object()?;
        }
        j.end_array()?;
        j.field_uint("shared_omitted", u64::from(omitted))?;
        j.key("swap")?;
        match view.swap_slots() {
            Some(slots) => {
                j.begin_object()?;
                j.field_uint("slots", u64::from(slots))?;
                j.field_uint("used", u64::from(view.swap_used()))?;
                j.field_uint("free", u64::from(view.swap_free()))?;
                j.end_object()?;
            }
            None => j.null()?,
        }
        return j.end_document();
    }

    writeln!(
        out,
        "frames: {} for paging ({start:#010x}..{:#010x}): {} free, {used} used, {} shared \
         ({} extra references); {} reserved below start_mem",
        t.paging_frames,
        view.high_memory(),
        t.free_frames,
        t.shared_frames,
        t.shared_references,
        t.reserved_frames
    )?;
    match view.swap_slots() {
        Some(slots) => writeln!(
            out,
            "swap: {slots} slots, {} in use, {} free",
            view.swap_used(),
            view.swap_free()
        )?,
        None => writeln!(out, "swap: none")?,
    }
    writeln!(
        out,
        "{:>5}  {:>4}  {:>6}  {:>6}  {:>6}  {:>7}",
        "pid", "slot", "pages", "shared", "tables", "swapped"
    )?;
    let mut rows = 0;
    for slot in (1..NR_TASKS).filter(|&s| listed_slot(s)) {
        rows += 1;
        let u = mm::walk::slot_usage(view, slot);
        match tasks.pid_in_slot(slot) {
            Some(pid) => write!(out, "{pid:>5}")?,
            None => write!(out, "{:>5}", "-")?,
        }
        writeln!(
            out,
            "  {slot:>4}  {:>6}  {:>6}  {:>6}  {:>7}",
            u.pages, u.shared_pages, u.page_tables, u.swapped
        )?;
    }
    if rows == 0 {
        writeln!(out, "(no user task)")?;
    }
    if t.shared_frames == 0 {
        return writeln!(out, "no frame is mapped more than once");
    }
    writeln!(out, "frames with a count above 1 ({}):", t.shared_frames)?;
    for (frame, count) in shared().take(MAX_LISTED_SHARED as usize) {
        writeln!(out, "  {frame}  count {count}")?;
    }
    if omitted > 0 {
        writeln!(out, "  ... and {omitted} more")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Page-fault error codes (for the kernel's `faults`)
// ---------------------------------------------------------------------------------------

/// A #PF error code decoded: "not present|protection, read|write, user|kernel mode".
pub struct FaultCode(pub u32);

impl FaultCode {
    /// Bit 0: a protection violation on a present page (clear: page not present).
    pub fn protection(&self) -> bool {
        self.0 & fault_code::PRESENT != 0
    }
    pub fn write(&self) -> bool {
        self.0 & fault_code::WRITE != 0
    }
    /// Bit 2: the access came from ring 3.
    pub fn user(&self) -> bool {
        self.0 & fault_code::USER != 0
    }
}

impl Display for FaultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {}, {} mode",
            if self.protection() {
                "protection"
            } else {
                "not present"
            },
            if self.write() { "write" } else { "read" },
            if self.user() { "user" } else { "kernel" }
        )
    }
}

/// The linear range of slot `slot`: `(start, last)`.
pub fn slot_range(slot: usize) -> (u32, u32) {
    let start = slot_base(slot).as_u32();
    (start, start.wrapping_add(TASK_SIZE - 1))
}
