//! `monitor cpu`: the stopped CPU's system registers (CR0, CR2, CR3, CR4, GDTR, IDTR,
//! LDTR, TR), which gdb's register set lacks: gdb has no CR3 to find the page directory
//! with, nor CR2, the address of the last page fault.
//!
//! The kernel reads the registers inside the stub (the values are the stopped CPU's: the
//! stub itself never faults, so CR2 is still the last fault's address); this renders them.

use core::fmt::{self, Display, Write};

use serde::Serialize;

#[cfg(feature = "std")]
use serde::Deserialize;

use crate::value::{command_tag, Hex, SchemaVersion, Text};

/// A descriptor-table register (`sgdt`, `sidt`): base and limit (size - 1, in bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableRegister {
    pub base: u32,
    pub limit: u16,
}

/// What `monitor cpu` shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuState {
    pub cr0: u32,
    pub cr2: u32,
    pub cr3: u32,
    pub cr4: u32,
    pub gdtr: TableRegister,
    pub idtr: TableRegister,
    /// The LDT selector (`sldt`).
    pub ldtr: u16,
    /// The task register's selector (`str`).
    pub tr: u16,
}

/// CR0's bits by name (Intel SDM vol. 3, 2.5), low bit first.
pub const CR0_BITS: [(u32, &str); 11] = [
    (0, "PE"),
    (1, "MP"),
    (2, "EM"),
    (3, "TS"),
    (4, "ET"),
    (5, "NE"),
    (16, "WP"),
    (18, "AM"),
    (29, "NW"),
    (30, "CD"),
    (31, "PG"),
];

/// CR4's bits by name, low bit first (those a 32-bit CPU without PAE can have).
pub const CR4_BITS: [(u32, &str); 11] = [
    (0, "VME"),
    (1, "PVI"),
    (2, "TSD"),
    (3, "DE"),
    (4, "PSE"),
    (5, "PAE"),
    (6, "MCE"),
    (7, "PGE"),
    (8, "PCE"),
    (9, "OSFXSR"),
    (10, "OSXMMEXCPT"),
];

/// CR3's low bits that are not the page directory's address.
const CR3_FLAGS_MASK: u32 = 0xFFF;
/// CR0.WP: clear here, as on the 386 (ring 0 ignores RW; see `write_verify`).
const CR0_WP: u32 = 1 << 16;
/// Bytes per descriptor (GDT, LDT) and per interrupt gate (IDT).
const DESCRIPTOR_BYTES: u32 = 8;

/// The names of the set bits of `value`, space-separated ("-" when none).
pub struct Bits<'a> {
    pub value: u32,
    pub names: &'a [(u32, &'a str)],
}

impl fmt::Display for Bits<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        for &(bit, name) in self.names {
            if self.value >> bit & 1 != 0 {
                if any {
                    f.write_char(' ')?;
                }
                f.write_str(name)?;
                any = true;
            }
        }
        if !any {
            f.write_char('-')?;
        }
        Ok(())
    }
}

fn entries(table: TableRegister) -> u32 {
    (u32::from(table.limit) + 1) / DESCRIPTOR_BYTES
}

command_tag!(
    /// `"cpu"`.
    CpuCommand = "cpu"
);

/// A descriptor-table register in a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TableRegisterDoc {
    pub base: Hex,
    /// Size - 1, in bytes.
    pub limit: Hex,
    /// Descriptors (GDT) or gates (IDT) it holds.
    pub entries: u32,
}

impl TableRegisterDoc {
    fn of(t: TableRegister) -> TableRegisterDoc {
        TableRegisterDoc {
            base: Hex(t.base),
            limit: Hex(u32::from(t.limit)),
            entries: entries(t),
        }
    }
}

/// Bits by name, as a text field: rendered from the register in the kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct BitNames<'a>(pub Text<'a>);

impl Serialize for BitNames<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

#[cfg(feature = "std")]
impl<'de, 'a> Deserialize<'de> for BitNames<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<BitNames<'a>, D::Error> {
        Text::deserialize(d).map(BitNames)
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for BitNames<'_> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "BitNames".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "the set bits by name, space-separated (\"-\" when none)"
        })
    }
}

/// `cpu --json`: the stopped CPU's system registers.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "std", derive(Deserialize))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CpuDoc<'a> {
    pub command: CpuCommand,
    pub schema: SchemaVersion,
    /// CR0 and its bits by name.
    pub cr0: Hex,
    pub cr0_flags: BitNames<'a>,
    /// The linear address of the last page fault.
    pub cr2: Hex,
    /// CR3 and the page directory it names.
    pub cr3: Hex,
    pub pg_dir: Hex,
    /// CR4 and its bits by name.
    pub cr4: Hex,
    pub cr4_flags: BitNames<'a>,
    pub gdtr: TableRegisterDoc,
    pub idtr: TableRegisterDoc,
    /// The selectors of the current LDT and of the TSS.
    pub ldtr: Hex,
    pub tr: Hex,
}

/// A [`Bits`] of one of the document's registers, kept beside it.
pub struct Cpu {
    state: CpuState,
    cr0: Bits<'static>,
    cr4: Bits<'static>,
}

impl Cpu {
    pub fn new(state: &CpuState) -> Cpu {
        Cpu {
            state: *state,
            cr0: Bits {
                value: state.cr0,
                names: &CR0_BITS,
            },
            cr4: Bits {
                value: state.cr4,
                names: &CR4_BITS,
            },
        }
    }

    pub fn document(&self) -> CpuDoc<'_> {
        let s = &self.state;
        CpuDoc {
            command: CpuCommand,
            schema: SchemaVersion,
            cr0: Hex(s.cr0),
            cr0_flags: BitNames(Text::Display(&self.cr0)),
            cr2: Hex(s.cr2),
            cr3: Hex(s.cr3),
            pg_dir: Hex(s.cr3 & !CR3_FLAGS_MASK),
            cr4: Hex(s.cr4),
            cr4_flags: BitNames(Text::Display(&self.cr4)),
            gdtr: TableRegisterDoc::of(s.gdtr),
            idtr: TableRegisterDoc::of(s.idtr),
            ldtr: Hex(u32::from(s.ldtr)),
            tr: Hex(u32::from(s.tr)),
        }
    }
}

/// `cpu [--json]`.
pub fn cpu(state: &CpuState, json: bool, out: &mut dyn Write) -> fmt::Result {
    crate::emit(&Cpu::new(state).document(), json, out)
}

impl Display for CpuDoc<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(out, "cpu: the stopped CPU's system registers")?;
        let wp = if self.cr0.0 & CR0_WP == 0 {
            " (WP clear: ring 0 ignores RW, as on the 386)"
        } else {
            ""
        };
        writeln!(out, "  CR0  {}  {}{wp}", self.cr0, self.cr0_flags.0)?;
        writeln!(
            out,
            "  CR2  {}  the linear address of the last page fault",
            self.cr2
        )?;
        writeln!(
            out,
            "  CR3  {}  page directory at {}",
            self.cr3, self.pg_dir
        )?;
        writeln!(out, "  CR4  {}  {}", self.cr4, self.cr4_flags.0)?;
        for (name, table, what) in [
            ("GDTR", self.gdtr, "descriptors"),
            ("IDTR", self.idtr, "gates"),
        ] {
            writeln!(
                out,
                "  {name} base {} limit {:#06x} ({} {what})",
                table.base, table.limit.0, table.entries
            )?;
        }
        writeln!(
            out,
            "  LDTR {:#06x}      GDT entry {} (the current task's LDT)",
            self.ldtr.0,
            self.ldtr.0 >> 3
        )?;
        writeln!(
            out,
            "  TR   {:#06x}      GDT entry {} (the TSS)",
            self.tr.0,
            self.tr.0 >> 3
        )
    }
}
