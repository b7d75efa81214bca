//! Answers built from QEMU's reads of physical memory, decoded with the kernel's own `mm` decoder, shaped like the monitor's JSON.
//!
//! The documents carry the monitor's field names so a client reads both sources alike;
//! what only the kernel knows is `null`: pids (the task table lives in kernel memory),
//! `mem_map` counts in walks and tables.

use mm::addr::{Frame, LinearAddr, ENTRIES_PER_TABLE, PDES_PER_TASK, PDE_SPAN};
use mm::entry::Entry;
use mm::raw_walk::{self, PhysRead};
use mm::walk::{Walk, WalkStop};
use serde_json::{json, Value};

use crate::qemu::Pages;

/// `"0x%08x"`, the monitor's form.
pub fn hex(value: u32) -> String {
    format!("{value:#010x}")
}

fn flags(e: Entry) -> String {
    e.describe().to_string()
}

/// Filters of the page-directory query that the post-mortem form can apply.
#[derive(Default, Clone, Copy)]
pub struct PgdFilter {
    pub range: Option<(u64, u64)>,
    pub user: Option<bool>,
    pub writable: Option<bool>,
}

/// The present directory entries (never merged), with present PTEs counted from each table in `pages`.
pub fn page_directory(pages: &Pages, pg_dir: Frame, high_memory: u32, filter: PgdFilter) -> Value {
    let mut present = 0;
    let mut nonzero = 0;
    let mut entries = Vec::new();
    for index in 0..ENTRIES_PER_TABLE {
        let pde = pages.read_entry(pg_dir, index);
        if !pde.is_present() {
            if pde.raw() != 0 {
                nonzero += 1;
            }
            continue;
        }
        present += 1;
        let start = index as u64 * PDE_SPAN as u64;
        let last = start + PDE_SPAN as u64 - 1;
        if let Some((lo, hi)) = filter.range {
            if last < lo || start >= hi {
                continue;
            }
        }
        if filter.user.is_some_and(|u| u != pde.is_user())
            || filter.writable.is_some_and(|w| w != pde.is_writable())
        {
            continue;
        }
        let readable = pde.frame().as_u32() < high_memory && pages.has(pde.frame());
        entries.push(json!({
            "index": index,
            "start": hex(start as u32),
            "last": hex(last as u32),
            "table": hex(pde.frame().as_u32()),
            "raw": hex(pde.raw()),
            "flags": flags(pde),
            "present": true,
            "user": pde.is_user(),
            "writable": pde.is_writable(),
            "accessed": pde.flags().contains(mm::entry::EntryFlags::ACCESSED),
            "table_readable": readable,
            "present_ptes": readable.then(|| raw_walk::present_entries(pages, pde.frame())),
            "slot": index / PDES_PER_TASK,
            "pid": null,
        }));
    }
    json!({
        "command": "dumppgd",
        "schema": 1,
        "pg_dir": hex(pg_dir.as_u32()),
        "present": present,
        "not_present_nonzero": nonzero,
        "filter": {
            "task": null, "slot": null,
            "range": filter.range.map(|(s, e)| json!({"start": format!("{s:#010x}"), "end": format!("{e:#010x}")})),
            "user": filter.user, "writable": filter.writable, "merged": false,
        },
        "shown": entries.len(),
        "entries": entries,
    })
}

/// One page table, like `dumppt INDEX`.
pub fn page_table(pages: &Pages, pg_dir: Frame, high_memory: u32, index: usize) -> Value {
    let pde = pages.read_entry(pg_dir, index);
    let start = (index as u64 * PDE_SPAN as u64) as u32;
    let readable = pde.is_present() && pde.frame().as_u32() < high_memory && pages.has(pde.frame());
    let mut entries = Vec::new();
    let (mut present, mut swap) = (0, 0);
    if readable {
        for i in 0..ENTRIES_PER_TABLE {
            let pte = pages.read_entry(pde.frame(), i);
            if pte.raw() == 0 {
                continue;
            }
            if pte.is_present() {
                present += 1;
            } else {
                swap += 1;
            }
            entries.push(json!({
                "index": i,
                "linear": hex(LinearAddr::from_indices(index, i).as_u32()),
                "raw": hex(pte.raw()),
                "flags": flags(pte),
                "present": pte.is_present(),
                "swap_slot": pte.is_swap().then(|| pte.swap_slot()),
                "frame": pte.is_present().then(|| hex(pte.frame().as_u32())),
                "count": null,
            }));
        }
    }
    json!({
        "command": "dumppt",
        "schema": 1,
        "index": index,
        "start": hex(start),
        "last": hex(start + (PDE_SPAN - 1)),
        "slot": index / PDES_PER_TASK,
        "pid": null,
        "pde": { "raw": hex(pde.raw()), "flags": flags(pde), "present": pde.is_present() },
        "table": pde.is_present().then(|| hex(pde.frame().as_u32())),
        "table_readable": readable,
        "entries": entries,
        "present": present,
        "swap": swap,
    })
}

/// A walk document like `walk ADDR --json`, from [`Walk`].
pub fn walk_document(w: &Walk) -> Value {
    let stop = w.stop.map(|s| match s {
        WalkStop::NoPageTable => {
            json!({"level": "pde", "reason": "no_page_table", "swap_slot": null})
        }
        WalkStop::NotMapped => json!({"level": "pte", "reason": "not_mapped", "swap_slot": null}),
        WalkStop::SwappedOut { slot } => {
            json!({"level": "pte", "reason": "swapped_out", "swap_slot": slot})
        }
    });
    // A present PDE whose table was not read: the monitor says table_beyond_memory.
    let stop = stop.or_else(|| {
        (w.pde.is_present() && w.pte.is_none())
            .then(|| json!({"level": "pde", "reason": "table_beyond_memory", "swap_slot": null}))
    });
    json!({
        "command": "walk",
        "schema": 1,
        "linear": hex(w.linear.as_u32()),
        "task": null,
        "pde": { "index": w.pde_index, "raw": hex(w.pde.raw()), "flags": flags(w.pde), "present": w.pde.is_present() },
        "table": w.pde.is_present().then(|| hex(w.pde.frame().as_u32())),
        "pte": {
            "index": w.pte_index,
            "raw": w.pte.map(|p| hex(p.raw())),
            "flags": w.pte.map(flags),
            "present": w.pte.map(|p| p.is_present()),
        },
        "frame": w.frame.map(|(f, _)| hex(f.as_u32())),
        "count": w.frame.and_then(|(_, c)| c),
        "physical": w.physical().map(hex),
        "stop": stop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_use_the_monitor_field_names() {
        let pages = Pages::default();
        let dir = Frame::from_addr(0x1000).unwrap();
        let w = raw_walk::walk(&pages, dir, 0x100_0000, LinearAddr::new(0x0400_0000));
        let doc = walk_document(&w);
        assert_eq!(doc["stop"]["reason"], "no_page_table");
        assert_eq!(doc["linear"], "0x04000000");
        let pt = page_table(&pages, dir, 0x100_0000, 16);
        assert_eq!(pt["table_readable"], false);
        let pgd = page_directory(&pages, dir, 0x100_0000, PgdFilter::default());
        assert_eq!(pgd["present"], 0);
    }
}
