//! `monitor cpu`: the stopped CPU's system registers (CR0, CR2, CR3, CR4, GDTR, IDTR,
//! LDTR, TR), which gdb's register set lacks: gdb has no CR3 to find the page directory
//! with, nor CR2, the address of the last page fault.
//!
//! The kernel reads the registers inside the stub (the values are the stopped CPU's: the
//! stub itself never faults, so CR2 is still the last fault's address); this renders them.

use core::fmt::{self, Write};

use crate::command::CommandName;
use crate::monitor::Json;

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

/// `cpu [--json]`.
pub fn cpu(state: &CpuState, json: bool, out: &mut dyn Write) -> fmt::Result {
    let cr0_bits = Bits {
        value: state.cr0,
        names: &CR0_BITS,
    };
    let cr4_bits = Bits {
        value: state.cr4,
        names: &CR4_BITS,
    };
    let pg_dir = state.cr3 & !CR3_FLAGS_MASK;
    if json {
        let mut j = Json::new(out);
        j.begin_document(CommandName::Cpu)?;
        j.field_hex("cr0", state.cr0)?;
        j.field_display("cr0_flags", &cr0_bits)?;
        j.field_hex("cr2", state.cr2)?;
        j.field_hex("cr3", state.cr3)?;
        j.field_hex("pg_dir", pg_dir)?;
        j.field_hex("cr4", state.cr4)?;
        j.field_display("cr4_flags", &cr4_bits)?;
        for (key, table) in [("gdtr", state.gdtr), ("idtr", state.idtr)] {
            j.key(key)?;
            j.begin_object()?;
            j.field_hex("base", table.base)?;
            j.field_hex("limit", u32::from(table.limit))?;
            j.field_uint("entries", u64::from(entries(table)))?;
            j.end_object()?;
        }
        j.field_hex("ldtr", u32::from(state.ldtr))?;
        j.field_hex("tr", u32::from(state.tr))?;
        return j.end_document();
    }
    writeln!(out, "cpu: the stopped CPU's system registers")?;
    let wp = if state.cr0 & CR0_WP == 0 {
        " (WP clear: ring 0 ignores RW, as on the 386)"
    } else {
        ""
    };
    writeln!(out, "  CR0  {:#010x}  {cr0_bits}{wp}", state.cr0)?;
    writeln!(
        out,
        "  CR2  {:#010x}  the linear address of the last page fault",
        state.cr2
    )?;
    writeln!(
        out,
        "  CR3  {:#010x}  page directory at {pg_dir:#010x}",
        state.cr3
    )?;
    writeln!(out, "  CR4  {:#010x}  {cr4_bits}", state.cr4)?;
    for (name, table, what) in [
        ("GDTR", state.gdtr, "descriptors"),
        ("IDTR", state.idtr, "gates"),
    ] {
        writeln!(
            out,
            "  {name} base {:#010x} limit {:#06x} ({} {what})",
            table.base,
            table.limit,
            entries(table)
        )?;
    }
    writeln!(
        out,
        "  LDTR {:#06x}      GDT entry {} (the current task's LDT)",
        state.ldtr,
        state.ldtr >> 3
    )?;
    writeln!(
        out,
        "  TR   {:#06x}      GDT entry {} (the TSS)",
        state.tr,
        state.tr >> 3
    )
}
