//! Post-mortem answers: the kernel's own documents (`kernel/report`), computed here over
//! a view of the machine built from QEMU's reads of physical memory.
//!
//! What only the kernel knows stays unknown: pids other than the kernel's (the task table
//! lives in kernel memory), `mem_map` counts (`null`), and `start_mem` (taken as
//! `LOW_MEM`, so a corrupted directory entry naming reserved memory is read as a table
//! here where the kernel would refuse it).

use mm::addr::{Frame, PhysAddr, LOW_MEM};
use mm::view::PagingView;
use report::TaskSlots;

use crate::qemu::Pages;

/// The machine as QEMU showed it: the pages fetched, the directory (CR3), RAM's end.
pub struct QemuView<'p> {
    pub pages: &'p Pages,
    pub pg_dir: Frame,
    pub high_memory: u32,
}

impl PagingView for QemuView<'_> {
    fn read_phys_u32(&self, addr: PhysAddr) -> u32 {
        self.pages.read_u32(addr)
    }
    fn pg_dir(&self) -> Frame {
        self.pg_dir
    }
    fn high_memory(&self) -> u32 {
        self.high_memory
    }
    fn start_mem(&self) -> u32 {
        LOW_MEM
    }
    fn kernel_pdes(&self) -> usize {
        0
    }
    fn kernel_table(&self, _dir: usize) -> Frame {
        Frame::default()
    }
    fn map_count(&self, _index: usize) -> Option<u8> {
        None
    }
    fn nr_free(&self) -> u32 {
        0
    }
    fn free_bit(&self, _index: usize) -> bool {
        false
    }
    fn swap_slots(&self) -> Option<u32> {
        None
    }
    fn swap_bit(&self, _slot: u32) -> bool {
        false
    }
}

/// The task table post-mortem: only the kernel's slot is known (pid 0, slot 0).
pub struct KernelOnly;

impl TaskSlots for KernelOnly {
    fn pid_in_slot(&self, slot: usize) -> Option<u32> {
        (slot == 0).then_some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mm::addr::LinearAddr;

    #[test]
    fn documents_come_from_the_kernels_own_code() {
        let pages = Pages::default();
        let view = QemuView {
            pages: &pages,
            pg_dir: Frame::from_addr(0x1000).unwrap(),
            high_memory: 0x100_0000,
        };
        let w = report::walk(
            &view,
            &KernelOnly,
            LinearAddr::new(0x0400_0000).as_u32(),
            None,
        )
        .unwrap();
        let doc = serde_json::to_value(w).unwrap();
        assert_eq!(doc["stop"]["reason"], "no_page_table");
        assert_eq!(doc["linear"], "0x04000000");
        let pt = report::DumpPt::new(&view, &KernelOnly, 16);
        let pt = serde_json::to_value(pt.document()).unwrap();
        assert_eq!(pt["table_readable"], false);
        let pgd = report::DumpPgd::new(&view, &KernelOnly, &report::PgdFilter::default()).unwrap();
        assert_eq!(serde_json::to_value(pgd.document()).unwrap()["present"], 0);
        // checkmm and showmem need mem_map, which QEMU's view does not have.
        assert!(report::ShowMem::new(&view, &KernelOnly).is_err());
    }
}
