//! `compat=`: the originals' behaviour on demand, deviation by deviation.
//!
//! Each bit is a row of `kernel/docs/deviations.md` (bit *n* is row D*n*) whose original a
//! learner can watch happen here; with it set, the code at the spot the row names does
//! what 0.11/0.12 does, bug included. `compat=0.11` sets every one, `compat=D1,D4` some.
//! The rows that cannot be reproduced are refused with the reason (the table says it
//! too). Nothing is set by default: the kernel fixes the originals' bugs.

use core::fmt;

bitflags::bitflags! {
    /// The rows whose original behaviour is on.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Compat: u32 {
        /// `free_page_tables` refuses only `from == 0`, the check the seed text marks
        /// "BUG": a range of the kernel's slot above 0 frees the kernel's own tables.
        const D1 = 1 << 1;
        /// `get_free_page` scans `mem_map` linearly (the same as `alloc=scan`).
        const D3 = 1 << 3;
        /// `free_page` of a free or nonexistent frame panics.
        const D4 = 1 << 4;
        /// `un_wp_page` maps the new page before it copies into it (0.11's order).
        const D8 = 1 << 8;
        /// The kernel's own store into user memory faults the page in (ring-0 faults),
        /// after `verify_area`'s `write_verify`, as 0.11's `put_fs_byte`.
        const D9 = 1 << 9;
        /// `HIGH_MEMORY` is capped at 16 MiB.
        const D16 = 1 << 16;
        /// `un_wp_page` maps its copy `new | 7`: clean, whatever the page held.
        const D18 = 1 << 18;
        /// `try_to_swap_out` points the entry at the slot before it writes the page, and
        /// ignores a failed write.
        const D19 = 1 << 19;
        /// A system call's access past the task's segment kills it with SIGSEGV (0.11's
        /// `die()` on the general protection fault) instead of returning EFAULT.
        const D21 = 1 << 21;
        /// The refusals of `free_page_tables` and `copy_page_tables` that 0.11 makes with
        /// `panic()` panic again.
        const D22 = 1 << 22;
    }
}

/// One reproducible row: its bit and what the original does, for the boot message.
pub struct Row {
    pub row: Compat,
    pub name: &'static str,
    pub original: &'static str,
}

/// Every reproducible row, in the table's order.
pub const ROWS: &[Row] = &[
    Row {
        row: Compat::D1,
        name: "D1",
        original: "free_page_tables refuses only from == 0",
    },
    Row {
        row: Compat::D3,
        name: "D3",
        original: "get_free_page scans mem_map linearly",
    },
    Row {
        row: Compat::D4,
        name: "D4",
        original: "free_page panics on a free or nonexistent frame",
    },
    Row {
        row: Compat::D8,
        name: "D8",
        original: "un_wp_page maps the new page, then copies",
    },
    Row {
        row: Compat::D9,
        name: "D9",
        original: "the kernel's stores into user memory fault pages in (ring 0)",
    },
    Row {
        row: Compat::D16,
        name: "D16",
        original: "HIGH_MEMORY is capped at 16 MiB",
    },
    Row {
        row: Compat::D18,
        name: "D18",
        original: "un_wp_page's copy is mapped clean (new | 7)",
    },
    Row {
        row: Compat::D19,
        name: "D19",
        original: "try_to_swap_out names the slot before the write, and ignores its failure",
    },
    Row {
        row: Compat::D21,
        name: "D21",
        original: "a system call touching memory past the segment kills the task (die)",
    },
    Row {
        row: Compat::D22,
        name: "D22",
        original: "free_page_tables and copy_page_tables panic where 0.11 panics",
    },
];

/// The rows that cannot be reproduced here, and why (the table's reasons, shortened).
pub const NOT_REPRODUCED: &[(&str, &str)] = &[
    (
        "D2",
        "a wrap needs 256 references to one frame, and 63 tasks cannot make them",
    ),
    (
        "D5",
        "no caller gives put_page a bad or shared frame or a mapped address",
    ),
    (
        "D6",
        "only a damaged directory entry makes a read fault on a present page, and 0.11 then loops",
    ),
    (
        "D7",
        "no user segment reaches the kernel's slot, so its user bit cannot be used",
    ),
    (
        "D10",
        "every entry change flushes the TLB here: no stale entry faults",
    ),
    (
        "D11",
        "the order matters only when a count overflows (D2), which cannot happen",
    ),
    (
        "D12",
        "fork's child slot is always empty and do_no_page checks the entry first",
    ),
    ("D13", "the task structure lives in Rust's task table"),
    (
        "D14",
        "execve maps nothing: the argument is read with getarg",
    ),
    ("D15", "task 1 is built directly, not forked from task 0"),
    (
        "D17",
        "only a damaged directory entry reaches it, and the loop would hang the stopped kernel",
    ),
    (
        "D20",
        "the original livelocks: the run would hang with nothing left to show",
    ),
    (
        "D23",
        "each refusal guards a damaged entry or a path no caller takes",
    ),
    (
        "D24",
        "where paging memory starts is the machine's layout, not a behaviour",
    ),
    (
        "D25",
        "the swap bitmap lives in the paging state, not in a frame",
    ),
    ("D26", "invlpg and a CR3 reload differ only in time"),
];

/// Why a `compat=` value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompatError<'a> {
    /// No row of that name.
    Unknown(&'a str),
    /// The row exists but its original cannot be reproduced: the reason.
    NotReproduced(&'a str, &'static str),
    /// An empty value or an empty name between commas.
    Empty,
}

impl fmt::Display for CompatError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompatError::Unknown(name) => write!(
                f,
                "no deviation {name} to restore (0.11, or rows of kernel/docs/deviations.md: D1,D4,...)"
            ),
            CompatError::NotReproduced(name, why) => {
                write!(f, "{name} cannot be reproduced here: {why}")
            }
            CompatError::Empty => f.write_str("empty compat= value"),
        }
    }
}

impl Compat {
    /// Every reproducible row (`compat=0.11`).
    pub fn originals() -> Compat {
        ROWS.iter().fold(Compat::empty(), |all, r| all | r.row)
    }

    /// Parses `compat=`'s value: `0.11` (every row) or row names separated by commas.
    pub fn parse(value: &str) -> Result<Compat, CompatError<'_>> {
        if value == "0.11" {
            return Ok(Compat::originals());
        }
        let mut compat = Compat::empty();
        for name in value.split(',') {
            if name.is_empty() {
                return Err(CompatError::Empty);
            }
            if let Some(row) = ROWS.iter().find(|r| r.name.eq_ignore_ascii_case(name)) {
                compat |= row.row;
            } else if let Some((_, why)) = NOT_REPRODUCED
                .iter()
                .find(|(row, _)| row.eq_ignore_ascii_case(name))
            {
                return Err(CompatError::NotReproduced(name, why));
            } else {
                return Err(CompatError::Unknown(name));
            }
        }
        Ok(compat)
    }

    /// The rows set, each with what it restores.
    pub fn rows(self) -> impl Iterator<Item = &'static Row> {
        ROWS.iter().filter(move |r| self.contains(r.row))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn every_row_is_bit_n_of_its_name() {
        for row in ROWS {
            let n: u32 = row.name[1..].parse().unwrap();
            assert_eq!(row.row.bits(), 1 << n, "{}", row.name);
        }
        assert_eq!(Compat::originals(), Compat::all());
    }

    #[test]
    fn parse_takes_0_11_or_rows_and_refuses_the_rest_with_the_reason() {
        assert_eq!(Compat::parse("0.11"), Ok(Compat::all()));
        assert_eq!(Compat::parse("D1"), Ok(Compat::D1));
        assert_eq!(Compat::parse("d1,D22"), Ok(Compat::D1 | Compat::D22));
        assert_eq!(Compat::parse("D99"), Err(CompatError::Unknown("D99")));
        assert_eq!(Compat::parse("D1,"), Err(CompatError::Empty));
        assert!(matches!(
            Compat::parse("D1,D2"),
            Err(CompatError::NotReproduced("D2", why)) if why.contains("256 references")
        ));
        // Every row of the table is named once, reproducible or not.
        for n in 1..=26 {
            let name = std::format!("D{n}");
            let known = ROWS.iter().any(|r| r.name == name)
                || NOT_REPRODUCED.iter().any(|(r, _)| *r == name);
            assert!(known, "{name} is in neither list");
        }
    }
}
