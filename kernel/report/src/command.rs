//! The monitor's command line: the parser (`monitor LINE` in gdb), the commands and their
//! arguments, and every error a command can answer with.
//!
//! Never panics on any input: a bad argument is a [`ParseError`] naming the command, the
//! argument and why.

use core::fmt::{self, Display};

use mm::addr::{ENTRIES_PER_TABLE, TASK_SIZE};
use mm::inject::{site_by_name, FaultAttr};
use mm::memory::AllocSite;

// ---------------------------------------------------------------------------------------
// Commands and their arguments
// ---------------------------------------------------------------------------------------

/// The monitor commands (the names are the interface gdb users and scripts type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "std", derive(serde::Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum CommandName {
    Help,
    DumpPgd,
    DumpPt,
    Walk,
    CheckMm,
    ShowMem,
    Tasks,
    Faults,
    Catch,
    Fail,
    FailNth,
    Corrupt,
    Cpu,
}

impl CommandName {
    /// Every command, in the order `help` lists them.
    pub const ALL: [CommandName; 13] = [
        CommandName::Help,
        CommandName::DumpPgd,
        CommandName::DumpPt,
        CommandName::Walk,
        CommandName::CheckMm,
        CommandName::ShowMem,
        CommandName::Tasks,
        CommandName::Faults,
        CommandName::Catch,
        CommandName::Fail,
        CommandName::FailNth,
        CommandName::Corrupt,
        CommandName::Cpu,
    ];

    /// The word that selects the command.
    pub const fn name(self) -> &'static str {
        match self {
            CommandName::Help => "help",
            CommandName::DumpPgd => "dumppgd",
            CommandName::DumpPt => "dumppt",
            CommandName::Walk => "walk",
            CommandName::CheckMm => "checkmm",
            CommandName::ShowMem => "showmem",
            CommandName::Tasks => "tasks",
            CommandName::Faults => "faults",
            CommandName::Catch => "catch",
            CommandName::Fail => "fail",
            CommandName::FailNth => "failnth",
            CommandName::Corrupt => "corrupt",
            CommandName::Cpu => "cpu",
        }
    }

    /// The full syntax, as the usage line prints it.
    pub const fn usage(self) -> &'static str {
        match self {
            CommandName::Help => "help [--json]",
            CommandName::DumpPgd => {
                "dumppgd [--task PID] [--range START-END] [--user|--kernel] [--rw|--ro] [--all] [--json]"
            }
            CommandName::DumpPt => "dumppt INDEX [--json]",
            CommandName::Walk => "walk ADDR [--task PID] [--json]",
            CommandName::CheckMm => "checkmm [--json]",
            CommandName::ShowMem => "showmem [--json]",
            CommandName::Tasks => "tasks [--json]",
            CommandName::Faults => "faults [--json]",
            CommandName::Catch => "catch [pagefault [on|off]] [--json]",
            CommandName::Fail => {
                "fail [SITE [off | probability=P interval=N times=N space=BYTES filter=on|off] | seed N | task PID on|off] [--json]"
            }
            CommandName::FailNth => "failnth PID [N] [--json]",
            CommandName::Corrupt => {
                "corrupt pte ADDR BIT [--task PID] | pde INDEX BIT | count FRAME DELTA | leak [--json]"
            }
            CommandName::Cpu => "cpu [--json]",
        }
    }

    /// One line on what the command shows.
    pub const fn summary(self) -> &'static str {
        match self {
            CommandName::Help => "this list",
            CommandName::DumpPgd => {
                "the page directory: each present entry (linear range, page table, flags, \
                 present PTEs), adjacent alike entries merged unless --all; END is exclusive"
            }
            CommandName::DumpPt => {
                "one page table (INDEX = directory index, 0-1023), entry by entry: linear \
                 address, raw, flags, frame, mem_map count"
            }
            CommandName::Walk => {
                "the software walk of a linear address (with --task, ADDR is an offset in \
                 that task's segment): indices, raw entries, flags, physical address, count"
            }
            CommandName::CheckMm => {
                "does mem_map agree with every page table? OK with the counts, or each mismatch"
            }
            CommandName::ShowMem => {
                "free, used, shared and reserved frames, pages per task, frames mapped more \
                 than once"
            }
            CommandName::Tasks => {
                "each task: pid, state, slot, linear range, program, pages, parent, faults"
            }
            CommandName::Faults => "the recent page faults and what the handler did",
            CommandName::Catch => {
                "stop into gdb at every page fault, before it is handled (alone: show the setting)"
            }
            CommandName::Fail => {
                "failure injection (Linux's knobs) per allocation site: alone, every site with \
                 its settings and how often it fired; SITE: set its knobs (the rest keep \
                 their values), off: disable it; seed: the random choice; task: mark a task \
                 for sites with filter=on (make-it-fail)"
            }
            CommandName::FailNth => {
                "make that task's Nth eligible allocation fail (0 cancels; alone: show it)"
            }
            CommandName::Corrupt => {
                "break the paging state on purpose for checkmm to catch: flip bit BIT of the \
                 PTE of ADDR (linear, or an offset with --task) or of PDE INDEX, add DELTA to \
                 the mem_map count of FRAME, or leak a free frame"
            }
            CommandName::Cpu => {
                "the stopped CPU's system registers: CR0, CR2 (the last page-fault address), \
                 CR3 (the page directory), CR4, GDTR, IDTR, LDTR, TR"
            }
        }
    }

    /// The command `word` names (ASCII case ignored).
    pub fn from_name(word: &str) -> Option<CommandName> {
        CommandName::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(word))
    }
}

/// A linear range `[start, end)`; `end` may be 2^32 (the whole space).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearRange {
    pub start: u32,
    pub end: u64,
}

impl LinearRange {
    /// Whether `[first, first + len)` meets this range.
    pub(crate) fn meets(&self, first: u32, len: u32) -> bool {
        u64::from(first) < self.end && u64::from(first) + u64::from(len) > u64::from(self.start)
    }
}

/// Which directory entries `dumppgd` shows, and whether it merges runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PgdFilter {
    /// Only the slot of the task with this pid.
    pub task: Option<u32>,
    /// Only entries whose 4 MiB meet this range.
    pub range: Option<LinearRange>,
    /// `Some(true)`: only user (US) entries; `Some(false)`: only supervisor entries.
    pub user: Option<bool>,
    /// `Some(true)`: only writable entries; `Some(false)`: only read-only ones.
    pub writable: Option<bool>,
    /// One line per entry (no merging).
    pub all: bool,
}

/// A parsed command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    DumpPgd(PgdFilter),
    /// `index`: the page-directory index, 0..1023.
    DumpPt {
        index: usize,
    },
    /// `addr`: linear, or an offset in the segment of the task with pid `task`.
    Walk {
        addr: u32,
        task: Option<u32>,
    },
    CheckMm,
    ShowMem,
    Tasks,
    Faults,
    /// `Some(on)`: set catching page faults; `None`: show the setting.
    Catch {
        pagefault: Option<bool>,
    },
    Fail(FailCommand),
    /// `n`: `None` shows the task's setting.
    FailNth {
        pid: u32,
        n: Option<u32>,
    },
    Corrupt(CorruptCommand),
    Cpu,
}

impl Command {
    pub fn name(&self) -> CommandName {
        match self {
            Command::Help => CommandName::Help,
            Command::DumpPgd(_) => CommandName::DumpPgd,
            Command::DumpPt { .. } => CommandName::DumpPt,
            Command::Walk { .. } => CommandName::Walk,
            Command::CheckMm => CommandName::CheckMm,
            Command::ShowMem => CommandName::ShowMem,
            Command::Tasks => CommandName::Tasks,
            Command::Faults => CommandName::Faults,
            Command::Catch { .. } => CommandName::Catch,
            Command::Fail(_) => CommandName::Fail,
            Command::FailNth { .. } => CommandName::FailNth,
            Command::Corrupt(_) => CommandName::Corrupt,
            Command::Cpu => CommandName::Cpu,
        }
    }
}

/// A command and the form of its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    /// `--json` was given: answer with one JSON document.
    pub json: bool,
}

/// Why a command line was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError<'a> {
    /// The first word names no command (the answer is the help).
    UnknownCommand(&'a str),
    /// A `--word` the command does not take.
    UnknownFlag { command: CommandName, flag: &'a str },
    /// `text` should have been a number (decimal or 0x hex) for `what`.
    BadNumber {
        command: CommandName,
        what: &'static str,
        text: &'a str,
    },
    /// `what` is required and missing.
    MissingArgument {
        command: CommandName,
        what: &'static str,
    },
    /// A word the command does not take.
    ExtraArgument { command: CommandName, text: &'a str },
    /// A word that is not one of the allowed ones for `what`.
    BadWord {
        command: CommandName,
        what: &'static str,
        text: &'a str,
    },
    /// Two flags that exclude each other (or one flag twice).
    Conflict {
        command: CommandName,
        first: &'static str,
        second: &'static str,
    },
    /// A number outside what `what` allows (`limit` says what does).
    OutOfRange {
        command: CommandName,
        what: &'static str,
        text: &'a str,
        limit: &'static str,
    },
}

/// A refused command line, with the form the answer must take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseFailure<'a> {
    pub json: bool,
    pub error: ParseError<'a>,
}

/// What every error the monitor reports gives: a stable kind for scripts, a message.
pub trait Failure: Display {
    /// A snake_case word scripts can match on.
    fn kind(&self) -> &'static str;
    /// Whether the usage line helps (the arguments were wrong, not the state).
    fn shows_usage(&self) -> bool;
}

impl ParseError<'_> {
    /// The command the error is about (`help` for an unknown command).
    pub fn command(&self) -> CommandName {
        match *self {
            ParseError::UnknownCommand(_) => CommandName::Help,
            ParseError::UnknownFlag { command, .. }
            | ParseError::BadNumber { command, .. }
            | ParseError::MissingArgument { command, .. }
            | ParseError::ExtraArgument { command, .. }
            | ParseError::BadWord { command, .. }
            | ParseError::Conflict { command, .. }
            | ParseError::OutOfRange { command, .. } => command,
        }
    }
}

impl Failure for ParseError<'_> {
    fn kind(&self) -> &'static str {
        match self {
            ParseError::UnknownCommand(_) => "unknown_command",
            ParseError::UnknownFlag { .. } => "unknown_flag",
            ParseError::BadNumber { .. } => "bad_number",
            ParseError::MissingArgument { .. } => "missing_argument",
            ParseError::ExtraArgument { .. } => "extra_argument",
            ParseError::BadWord { .. } => "bad_argument",
            ParseError::Conflict { .. } => "conflicting_flags",
            ParseError::OutOfRange { .. } => "out_of_range",
        }
    }
    fn shows_usage(&self) -> bool {
        true
    }
}

impl Display for ParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ParseError::UnknownCommand(word) => write!(f, "unknown command '{word}'"),
            ParseError::UnknownFlag { command, flag } => {
                write!(f, "{}: unknown flag '{flag}'", command.name())
            }
            ParseError::BadNumber {
                command,
                what,
                text,
            } => write!(
                f,
                "{}: {what}: '{text}' is not a number (decimal or 0x hex)",
                command.name()
            ),
            ParseError::MissingArgument { command, what } => {
                write!(f, "{}: missing {what}", command.name())
            }
            ParseError::ExtraArgument { command, text } => {
                write!(f, "{}: unexpected argument '{text}'", command.name())
            }
            ParseError::BadWord {
                command,
                what,
                text,
            } => write!(f, "{}: {what}: '{text}' is not allowed", command.name()),
            ParseError::Conflict {
                command,
                first,
                second,
            } => {
                if first == second {
                    write!(f, "{}: {first} given twice", command.name())
                } else {
                    write!(
                        f,
                        "{}: {first} and {second} exclude each other",
                        command.name()
                    )
                }
            }
            ParseError::OutOfRange {
                command,
                what,
                text,
                limit,
            } => write!(
                f,
                "{}: {what}: '{text}' is out of range ({limit})",
                command.name()
            ),
        }
    }
}

/// Errors of a well-formed command that the state does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonitorError {
    /// `--task PID` names no task.
    NoSuchTask { pid: u32 },
    /// A lock the command needs is held by the code gdb stopped: waiting would hang the
    /// stopped kernel, so the command gives up. `what` names the locked thing.
    Busy { what: &'static str },
    /// The scratch buffer `checkmm` was given has fewer entries than `mem_map`.
    ScratchTooSmall { needed: usize, given: usize },
    /// `walk --task`: the offset lies beyond the task's 64 MiB segment.
    OffsetBeyondSegment { offset: u32 },
    /// The view of the paging state has no `mem_map` (a post-mortem look at page tables
    /// alone): the command needs the counts.
    NoMemMap,
}

impl Failure for MonitorError {
    fn kind(&self) -> &'static str {
        match self {
            MonitorError::NoSuchTask { .. } => "no_such_task",
            MonitorError::Busy { .. } => "busy",
            MonitorError::ScratchTooSmall { .. } => "scratch_too_small",
            MonitorError::OffsetBeyondSegment { .. } => "out_of_range",
            MonitorError::NoMemMap => "no_mem_map",
        }
    }
    fn shows_usage(&self) -> bool {
        false
    }
}

impl Display for MonitorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MonitorError::NoSuchTask { pid } => write!(f, "no task with pid {pid}"),
            MonitorError::Busy { what } => write!(
                f,
                "{what} busy (held by the code gdb stopped); continue and try again"
            ),
            MonitorError::ScratchTooSmall { needed, given } => write!(
                f,
                "checkmm scratch has {given} entries, mem_map needs {needed}"
            ),
            MonitorError::OffsetBeyondSegment { offset } => write!(
                f,
                "offset {offset:#010x} lies beyond the task's 64 MiB segment"
            ),
            MonitorError::NoMemMap => f.write_str("this view of the machine has no mem_map"),
        }
    }
}

/// A number as gdb users type them: `0x` hex (any case) or decimal.
pub fn parse_number(text: &str) -> Option<u64> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    // from_str_radix accepts a leading '+'; a number typed here never has one.
    if digits.is_empty() || !digits.bytes().all(|b| (b as char).is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// A 32-bit number, or the error naming `what`.
pub(crate) fn number_u32<'a>(
    command: CommandName,
    what: &'static str,
    text: &'a str,
) -> Result<u32, ParseError<'a>> {
    match parse_number(text) {
        None => Err(ParseError::BadNumber {
            command,
            what,
            text,
        }),
        Some(n) => u32::try_from(n).map_err(|_| ParseError::OutOfRange {
            command,
            what,
            text,
            limit: "at most 0xffffffff",
        }),
    }
}

/// The value word after a flag.
pub(crate) fn value_of<'a>(
    command: CommandName,
    what: &'static str,
    words: &mut dyn Iterator<Item = &'a str>,
) -> Result<&'a str, ParseError<'a>> {
    words
        .next()
        .ok_or(ParseError::MissingArgument { command, what })
}

/// Sets an option given at most once.
fn set_once<'a, T>(
    slot: &mut Option<T>,
    value: T,
    command: CommandName,
    flag: &'static str,
) -> Result<(), ParseError<'a>> {
    if slot.is_some() {
        return Err(ParseError::Conflict {
            command,
            first: flag,
            second: flag,
        });
    }
    *slot = Some(value);
    Ok(())
}

/// Sets one of two exclusive flags (`--user`/`--kernel`, `--rw`/`--ro`).
fn set_choice<'a>(
    slot: &mut Option<bool>,
    value: bool,
    command: CommandName,
    [yes, no]: [&'static str; 2],
) -> Result<(), ParseError<'a>> {
    match *slot {
        None => {
            *slot = Some(value);
            Ok(())
        }
        Some(old) => {
            let name = |v: bool| if v { yes } else { no };
            Err(ParseError::Conflict {
                command,
                first: name(old),
                second: name(value),
            })
        }
    }
}

/// A word the command does not take: an unknown flag or an extra argument.
pub(crate) fn unexpected(command: CommandName, word: &str) -> ParseError<'_> {
    if word.starts_with("--") {
        ParseError::UnknownFlag {
            command,
            flag: word,
        }
    } else {
        ParseError::ExtraArgument {
            command,
            text: word,
        }
    }
}

/// Parses what follows `monitor ` in gdb. An empty line is `help`; `--json` may stand
/// anywhere. Never panics.
pub fn parse(line: &str) -> Result<Request, ParseFailure<'_>> {
    let json = line.split_ascii_whitespace().any(|w| w == "--json");
    let mut words = line.split_ascii_whitespace().filter(|&w| w != "--json");
    let fail = |error| ParseFailure { json, error };
    let Some(first) = words.next() else {
        return Ok(Request {
            command: Command::Help,
            json,
        });
    };
    let name = CommandName::from_name(first).ok_or(fail(ParseError::UnknownCommand(first)))?;
    let command = parse_arguments(name, &mut words).map_err(fail)?;
    Ok(Request { command, json })
}

fn parse_arguments<'a>(
    name: CommandName,
    words: &mut dyn Iterator<Item = &'a str>,
) -> Result<Command, ParseError<'a>> {
    match name {
        CommandName::DumpPgd => parse_dumppgd(words),
        CommandName::DumpPt => {
            let text = value_of(name, "INDEX", words)?;
            let index = number_u32(name, "INDEX", text)?;
            if index as usize >= ENTRIES_PER_TABLE {
                return Err(ParseError::OutOfRange {
                    command: name,
                    what: "INDEX",
                    text,
                    limit: "a directory index is 0 to 1023",
                });
            }
            match words.next() {
                Some(word) => Err(unexpected(name, word)),
                None => Ok(Command::DumpPt {
                    index: index as usize,
                }),
            }
        }
        CommandName::Walk => parse_walk(words),
        CommandName::Catch => parse_catch(words),
        CommandName::Fail => parse_fail(words).map(Command::Fail),
        CommandName::FailNth => parse_failnth(words),
        CommandName::Corrupt => parse_corrupt(words).map(Command::Corrupt),
        CommandName::Help
        | CommandName::CheckMm
        | CommandName::ShowMem
        | CommandName::Tasks
        | CommandName::Faults
        | CommandName::Cpu => {
            if let Some(word) = words.next() {
                return Err(unexpected(name, word));
            }
            Ok(match name {
                CommandName::Help => Command::Help,
                CommandName::CheckMm => Command::CheckMm,
                CommandName::ShowMem => Command::ShowMem,
                CommandName::Tasks => Command::Tasks,
                CommandName::Cpu => Command::Cpu,
                _ => Command::Faults,
            })
        }
    }
}

fn parse_dumppgd<'a>(words: &mut dyn Iterator<Item = &'a str>) -> Result<Command, ParseError<'a>> {
    const NAME: CommandName = CommandName::DumpPgd;
    let mut filter = PgdFilter::default();
    let mut all = None;
    while let Some(word) = words.next() {
        match word {
            "--task" => {
                let text = value_of(NAME, "PID after --task", words)?;
                let pid = number_u32(NAME, "PID", text)?;
                set_once(&mut filter.task, pid, NAME, "--task")?;
            }
            "--range" => {
                let text = value_of(NAME, "START-END after --range", words)?;
                set_once(&mut filter.range, parse_range(text)?, NAME, "--range")?;
            }
            "--user" => set_choice(&mut filter.user, true, NAME, ["--user", "--kernel"])?,
            "--kernel" => set_choice(&mut filter.user, false, NAME, ["--user", "--kernel"])?,
            "--rw" => set_choice(&mut filter.writable, true, NAME, ["--rw", "--ro"])?,
            "--ro" => set_choice(&mut filter.writable, false, NAME, ["--rw", "--ro"])?,
            "--all" => set_once(&mut all, (), NAME, "--all")?,
            other => return Err(unexpected(NAME, other)),
        }
    }
    filter.all = all.is_some();
    Ok(Command::DumpPgd(filter))
}

/// `START-END`, END exclusive and at most 2^32.
fn parse_range(text: &str) -> Result<LinearRange, ParseError<'_>> {
    const NAME: CommandName = CommandName::DumpPgd;
    let Some((start_text, end_text)) = text.split_once('-') else {
        return Err(ParseError::BadWord {
            command: NAME,
            what: "--range wants START-END",
            text,
        });
    };
    let start = number_u32(NAME, "START", start_text)?;
    let end = parse_number(end_text).ok_or(ParseError::BadNumber {
        command: NAME,
        what: "END",
        text: end_text,
    })?;
    if end > 1 << 32 || end <= u64::from(start) {
        return Err(ParseError::OutOfRange {
            command: NAME,
            what: "START-END",
            text,
            limit: "START < END <= 0x100000000; END is exclusive",
        });
    }
    Ok(LinearRange { start, end })
}

fn parse_walk<'a>(words: &mut dyn Iterator<Item = &'a str>) -> Result<Command, ParseError<'a>> {
    const NAME: CommandName = CommandName::Walk;
    let mut addr = None;
    let mut task = None;
    while let Some(word) = words.next() {
        if word == "--task" {
            let text = value_of(NAME, "PID after --task", words)?;
            let pid = number_u32(NAME, "PID", text)?;
            set_once(&mut task, pid, NAME, "--task")?;
        } else if word.starts_with("--") || addr.is_some() {
            return Err(unexpected(NAME, word));
        } else {
            addr = Some((number_u32(NAME, "ADDR", word)?, word));
        }
    }
    let (addr, text) = addr.ok_or(ParseError::MissingArgument {
        command: NAME,
        what: "ADDR",
    })?;
    if task.is_some() && addr >= TASK_SIZE {
        return Err(ParseError::OutOfRange {
            command: NAME,
            what: "ADDR",
            text,
            limit: "with --task, ADDR is an offset below 0x04000000 (64 MiB)",
        });
    }
    Ok(Command::Walk { addr, task })
}

fn parse_catch<'a>(words: &mut dyn Iterator<Item = &'a str>) -> Result<Command, ParseError<'a>> {
    const NAME: CommandName = CommandName::Catch;
    let Some(event) = words.next() else {
        return Ok(Command::Catch { pagefault: None });
    };
    if !event.eq_ignore_ascii_case("pagefault") {
        return Err(if event.starts_with("--") {
            unexpected(NAME, event)
        } else {
            ParseError::BadWord {
                command: NAME,
                what: "event (only 'pagefault')",
                text: event,
            }
        });
    }
    let pagefault = match words.next() {
        None => None,
        Some(w) if w.eq_ignore_ascii_case("on") => Some(true),
        Some(w) if w.eq_ignore_ascii_case("off") => Some(false),
        Some(w) if w.starts_with("--") => return Err(unexpected(NAME, w)),
        Some(w) => {
            return Err(ParseError::BadWord {
                command: NAME,
                what: "setting (on or off)",
                text: w,
            })
        }
    };
    match words.next() {
        Some(word) => Err(unexpected(NAME, word)),
        None => Ok(Command::Catch { pagefault }),
    }
}

/// What `fail` was asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailCommand {
    /// Every site, the seed, the marked tasks.
    Show,
    /// Change some knobs of a site (the others keep their values).
    Configure { site: AllocSite, patch: AttrPatch },
    /// Disable a site (probability 0).
    Off { site: AllocSite },
    /// Restart the random choice from this seed.
    Seed(u64),
    /// Mark (or unmark) a task for sites with `filter=on` (Linux's make-it-fail).
    Task { pid: u32, make_it_fail: bool },
}

/// Knobs given on a `fail SITE` line; `None` keeps the current value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttrPatch {
    pub probability: Option<u8>,
    pub interval: Option<u32>,
    pub times: Option<i32>,
    pub space: Option<u32>,
    pub filter: Option<bool>,
}

impl AttrPatch {
    pub(crate) fn apply(&self, attr: FaultAttr) -> FaultAttr {
        FaultAttr {
            probability: self.probability.unwrap_or(attr.probability),
            interval: self.interval.unwrap_or(attr.interval),
            times: self.times.unwrap_or(attr.times),
            space: self.space.unwrap_or(attr.space),
            task_filter: self.filter.unwrap_or(attr.task_filter),
        }
    }
}

/// What `corrupt` was asked to break.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorruptCommand {
    /// Flip bit `bit` of the PTE of `addr` (linear, or an offset in `task`'s segment).
    Pte {
        addr: u32,
        bit: u32,
        task: Option<u32>,
    },
    /// Flip bit `bit` of directory entry `index`.
    Pde { index: usize, bit: u32 },
    /// Add `delta` to the count of `frame`.
    Count { frame: u32, delta: i32 },
    /// Take a free frame that nothing maps.
    Leak,
}

pub(crate) const FAIL: CommandName = CommandName::Fail;
pub(crate) const FAILNTH: CommandName = CommandName::FailNth;
pub(crate) const CORRUPT: CommandName = CommandName::Corrupt;

fn on_off<'a>(
    command: CommandName,
    what: &'static str,
    text: &'a str,
) -> Result<bool, ParseError<'a>> {
    match text {
        "on" | "1" => Ok(true),
        "off" | "0" => Ok(false),
        _ => Err(ParseError::BadWord {
            command,
            what,
            text,
        }),
    }
}

fn end<'a>(
    command: CommandName,
    words: &mut dyn Iterator<Item = &'a str>,
) -> Result<(), ParseError<'a>> {
    match words.next() {
        Some(word) => Err(unexpected(command, word)),
        None => Ok(()),
    }
}

/// `fail [SITE [off | KNOB=VALUE...] | seed N | task PID on|off]`.
pub fn parse_fail<'a>(
    words: &mut dyn Iterator<Item = &'a str>,
) -> Result<FailCommand, ParseError<'a>> {
    let Some(first) = words.next() else {
        return Ok(FailCommand::Show);
    };
    match first {
        "seed" => {
            let text = value_of(FAIL, "N after seed", words)?;
            let seed = parse_number(text).ok_or(ParseError::BadNumber {
                command: FAIL,
                what: "seed",
                text,
            })?;
            end(FAIL, words)?;
            Ok(FailCommand::Seed(seed))
        }
        "task" => {
            let text = value_of(FAIL, "PID after task", words)?;
            let pid = number_u32(FAIL, "PID", text)?;
            let setting = value_of(FAIL, "on or off after the PID", words)?;
            let make_it_fail = on_off(FAIL, "make-it-fail (on or off)", setting)?;
            end(FAIL, words)?;
            Ok(FailCommand::Task { pid, make_it_fail })
        }
        word if word.starts_with("--") => Err(unexpected(FAIL, word)),
        name => {
            let site = site_by_name(name).map_err(|_| ParseError::BadWord {
                command: FAIL,
                what: "site (copy_page_tables, page_table, un_wp_page, do_no_page, fork_task_struct, execve)",
                text: name,
            })?;
            let mut patch = AttrPatch::default();
            let mut any = false;
            while let Some(word) = words.next() {
                if word == "off" && !any {
                    end(FAIL, words)?;
                    return Ok(FailCommand::Off { site });
                }
                let Some((key, value)) = word.split_once('=') else {
                    return Err(unexpected(FAIL, word));
                };
                any = true;
                match key {
                    "probability" => {
                        let p = number_u32(FAIL, "probability", value)?;
                        if p > 100 {
                            return Err(ParseError::OutOfRange {
                                command: FAIL,
                                what: "probability",
                                text: value,
                                limit: "a percentage, 0 to 100",
                            });
                        }
                        patch.probability = Some(p as u8);
                    }
                    "interval" => patch.interval = Some(number_u32(FAIL, "interval", value)?),
                    "space" => patch.space = Some(number_u32(FAIL, "space", value)?),
                    "times" => {
                        patch.times = Some(if value == "-1" {
                            -1
                        } else {
                            let t = number_u32(FAIL, "times", value)?;
                            i32::try_from(t).map_err(|_| ParseError::OutOfRange {
                                command: FAIL,
                                what: "times",
                                text: value,
                                limit: "-1 (unlimited) or 0 to 2147483647",
                            })?
                        });
                    }
                    "filter" => patch.filter = Some(on_off(FAIL, "filter (on or off)", value)?),
                    _ => {
                        return Err(ParseError::BadWord {
                            command: FAIL,
                            what: "knob (probability, interval, times, space, filter)",
                            text: word,
                        })
                    }
                }
            }
            Ok(FailCommand::Configure { site, patch })
        }
    }
}

/// `failnth PID [N]`.
pub fn parse_failnth<'a>(
    words: &mut dyn Iterator<Item = &'a str>,
) -> Result<Command, ParseError<'a>> {
    let text = value_of(FAILNTH, "PID", words)?;
    let pid = number_u32(FAILNTH, "PID", text)?;
    let n = match words.next() {
        None => None,
        Some(word) if word.starts_with("--") => return Err(unexpected(FAILNTH, word)),
        Some(word) => Some(number_u32(FAILNTH, "N", word)?),
    };
    end(FAILNTH, words)?;
    Ok(Command::FailNth { pid, n })
}

/// `corrupt pte ADDR BIT [--task PID] | pde INDEX BIT | count FRAME DELTA | leak`.
pub fn parse_corrupt<'a>(
    words: &mut dyn Iterator<Item = &'a str>,
) -> Result<CorruptCommand, ParseError<'a>> {
    let what = value_of(CORRUPT, "what to corrupt (pte, pde, count or leak)", words)?;
    let bit = |words: &mut dyn Iterator<Item = &'a str>| -> Result<u32, ParseError<'a>> {
        let text = value_of(CORRUPT, "BIT", words)?;
        let bit = number_u32(CORRUPT, "BIT", text)?;
        if bit > 31 {
            return Err(ParseError::OutOfRange {
                command: CORRUPT,
                what: "BIT",
                text,
                limit: "0 to 31",
            });
        }
        Ok(bit)
    };
    match what {
        "pte" => {
            let mut addr = None;
            let mut task = None;
            let mut bit_value = None;
            while let Some(word) = words.next() {
                if word == "--task" {
                    let text = value_of(CORRUPT, "PID after --task", words)?;
                    task = Some(number_u32(CORRUPT, "PID", text)?);
                } else if word.starts_with("--") {
                    return Err(unexpected(CORRUPT, word));
                } else if addr.is_none() {
                    addr = Some(number_u32(CORRUPT, "ADDR", word)?);
                } else if bit_value.is_none() {
                    let mut one = core::iter::once(word);
                    bit_value = Some(bit(&mut one)?);
                } else {
                    return Err(unexpected(CORRUPT, word));
                }
            }
            let addr = addr.ok_or(ParseError::MissingArgument {
                command: CORRUPT,
                what: "ADDR",
            })?;
            let bit = bit_value.ok_or(ParseError::MissingArgument {
                command: CORRUPT,
                what: "BIT",
            })?;
            if task.is_some() && addr >= TASK_SIZE {
                return Err(ParseError::OutOfRange {
                    command: CORRUPT,
                    what: "ADDR",
                    text: "with --task",
                    limit: "an offset below 0x04000000",
                });
            }
            Ok(CorruptCommand::Pte { addr, bit, task })
        }
        "pde" => {
            let text = value_of(CORRUPT, "INDEX", words)?;
            let index = number_u32(CORRUPT, "INDEX", text)? as usize;
            if index >= ENTRIES_PER_TABLE {
                return Err(ParseError::OutOfRange {
                    command: CORRUPT,
                    what: "INDEX",
                    text,
                    limit: "0 to 1023",
                });
            }
            let bit = bit(words)?;
            end(CORRUPT, words)?;
            Ok(CorruptCommand::Pde { index, bit })
        }
        "count" => {
            let text = value_of(CORRUPT, "FRAME", words)?;
            let frame = number_u32(CORRUPT, "FRAME", text)?;
            let text = value_of(CORRUPT, "DELTA (+N or -N)", words)?;
            let (sign, digits) = match text.as_bytes().first() {
                Some(b'-') => (-1, &text[1..]),
                Some(b'+') => (1, &text[1..]),
                _ => (1, text),
            };
            let magnitude = number_u32(CORRUPT, "DELTA", digits)?;
            if magnitude > 255 {
                return Err(ParseError::OutOfRange {
                    command: CORRUPT,
                    what: "DELTA",
                    text,
                    limit: "-255 to +255",
                });
            }
            end(CORRUPT, words)?;
            Ok(CorruptCommand::Count {
                frame,
                delta: sign * magnitude as i32,
            })
        }
        "leak" => {
            end(CORRUPT, words)?;
            Ok(CorruptCommand::Leak)
        }
        other => Err(ParseError::BadWord {
            command: CORRUPT,
            what: "what to corrupt (pte, pde, count or leak)",
            text: other,
        }),
    }
}
