//! The small documents: `help`, the error answer every command may give, and `catch`.

use core::fmt::{self, Display};
use core::ops::ControlFlow;

use serde::Serialize;

#[cfg(feature = "std")]
use serde::Deserialize;

use crate::command::{CommandName, Failure};
use crate::value::{command_tag, Items, SchemaVersion, Source, Text};

/// What went wrong, in an error answer or after an unknown command.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorDetail<'a> {
    /// A snake_case word scripts match on (kernel/docs/monitor.md lists them).
    pub kind: Text<'a>,
    /// The text form's first line.
    pub message: Text<'a>,
    /// The command's syntax.
    pub usage: Text<'a>,
}

impl<'a> ErrorDetail<'a> {
    pub fn of(command: CommandName, error: &'a dyn Failure) -> ErrorDetail<'a> {
        ErrorDetail {
            kind: Text::Str(error.kind()),
            message: Text::Display(error),
            usage: Text::Str(command.usage()),
        }
    }
}

/// Any command's error answer: `{"command", "schema", "error"}` and nothing else.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ErrorDoc<'a> {
    /// The command the error is about.
    pub command: CommandName,
    pub schema: SchemaVersion,
    pub error: ErrorDetail<'a>,
    /// Show the usage line in the text form (the arguments were wrong, not the state).
    #[serde(skip)]
    pub shows_usage: bool,
}

impl<'a> ErrorDoc<'a> {
    pub fn of(command: CommandName, error: &'a dyn Failure) -> ErrorDoc<'a> {
        ErrorDoc {
            command,
            schema: SchemaVersion,
            error: ErrorDetail::of(command, error),
            shows_usage: error.shows_usage(),
        }
    }
}

impl Display for ErrorDoc<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(out, "{}", self.error.message)?;
        if self.shows_usage {
            writeln!(out, "usage: {}", self.error.usage)?;
        }
        Ok(())
    }
}

command_tag!(
    /// `"help"`.
    HelpCommand = "help"
);

/// One command in the help.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CommandHelp {
    /// The word that selects it, its full syntax, one line on what it shows.
    pub name: Text<'static>,
    pub usage: Text<'static>,
    pub summary: Text<'static>,
}

/// `help --json`: every command with its arguments.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize, Clone, PartialEq))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HelpDoc<'a> {
    pub command: HelpCommand,
    pub schema: SchemaVersion,
    /// Only after an unknown command.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<ErrorDetail<'a>>,
    /// One object per command, in the order `help` lists them.
    pub commands: Items<'a, CommandHelp>,
}

/// Every command, for the help.
struct AllCommands;

impl Source<CommandHelp> for AllCommands {
    fn each(&self, f: &mut dyn FnMut(&CommandHelp) -> ControlFlow<()>) {
        for c in CommandName::ALL {
            let help = CommandHelp {
                name: Text::Str(c.name()),
                usage: Text::Str(c.usage()),
                summary: Text::Str(c.summary()),
            };
            if f(&help).is_break() {
                return;
            }
        }
    }
}

/// `help`; `error` is the unknown command's, when there was one.
pub fn help<'a>(error: Option<&'a dyn Failure>) -> HelpDoc<'a> {
    HelpDoc {
        command: HelpCommand,
        schema: SchemaVersion,
        error: error.map(|e| ErrorDetail::of(CommandName::Help, e)),
        commands: Items::Lazy(&AllCommands),
    }
}

impl Display for HelpDoc<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(error) = &self.error {
            writeln!(out, "{}", error.message)?;
        }
        writeln!(
            out,
            "monitor commands (numbers: decimal or 0x hex; --json on any command prints one JSON document):"
        )?;
        self.commands.try_each(&mut |c| {
            writeln!(out, "  {}", c.usage)?;
            writeln!(out, "      {}", c.summary)
        })
    }
}

command_tag!(
    /// `"catch"`.
    CatchCommand = "catch"
);

/// `catch --json`: the stub's switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CatchDoc {
    pub command: CatchCommand,
    pub schema: SchemaVersion,
    /// The setting now, before this command, and whether this command changed it.
    pub pagefault: bool,
    pub previous: bool,
    pub changed: bool,
    /// The command set it (rather than only showing it).
    #[serde(skip)]
    pub set: bool,
}

/// `catch [pagefault [on|off]]`: sets `switch` when asked, and says what it is.
pub fn catch(switch: &mut bool, setting: Option<bool>) -> CatchDoc {
    let previous = *switch;
    if let Some(on) = setting {
        *switch = on;
    }
    CatchDoc {
        command: CatchCommand,
        schema: SchemaVersion,
        pagefault: *switch,
        previous,
        changed: *switch != previous,
        set: setting.is_some(),
    }
}

impl Display for CatchDoc {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = |on: bool| if on { "on" } else { "off" };
        if self.set {
            writeln!(
                out,
                "catch pagefault: {} (was {})",
                word(self.pagefault),
                word(self.previous)
            )?;
        } else {
            writeln!(out, "catch pagefault: {}", word(self.pagefault))?;
        }
        if self.pagefault {
            writeln!(
                out,
                "every page fault stops into gdb before do_no_page/do_wp_page handles it"
            )?;
        }
        Ok(())
    }
}
