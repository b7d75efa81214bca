//! Property tests: random sequences of fork / write / read / fresh-page touch / exec /
//! kernel write / exit over the simulated kernel, checked after every step against a
//! reference model of what each task must read; and the bitmap frame search against
//! 0.11's linear scan.

mod support;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use mm::addr::{Frame, LOW_MEM, MAX_HIGH_MEMORY, PAGE_SIZE};
use mm::mem_map::MemMap;
use mm::memory::AllocSite;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use support::*;

/// Pages the random accesses use: mostly program text/data (both programs' `end_data`
/// fall inside, so sharing and loading happen often), a second page table, and the
/// stack's top page.
const PAGES: [u32; 7] = [0, 0x1000, 0x2000, 0x3000, 0x4000, 0x0040_0000, 0x03ff_f000];
/// Word offsets inside a page: 0x800 is exactly `end_data` of the first program.
const WORDS: [u32; 4] = [0, 4, 0x800, 0xffc];
/// Fresh pages a `Touch` writes: two page tables' worth nothing else uses.
const TOUCH_BASE: u32 = 0x0100_0000;
const TOUCH_PAGES: u32 = 2048;

fn programs() -> [Rc<Program>; 2] {
    [
        Program::patterned("first", 1, 0x2800),
        Program::patterned("second", 2, 0x4002),
    ]
}

#[derive(Clone, Debug)]
enum Step {
    Spawn {
        program: Option<usize>,
    },
    Fork {
        task: Index,
    },
    Write {
        task: Index,
        at: u32,
        value: u32,
    },
    Read {
        task: Index,
        at: u32,
    },
    Touch {
        task: Index,
        page: u32,
        value: u32,
    },
    Exec {
        task: Index,
        program: Option<usize>,
    },
    KernelWrite {
        task: Index,
        at: u32,
        value: u32,
    },
    /// `verify_area` with no store after it (a `read()` that returned 0 bytes).
    VerifyArea {
        task: Index,
        at: u32,
    },
    Exit {
        task: Index,
    },
    /// Make the next allocation at a site fail after `skip` successful ones.
    Inject {
        site: usize,
        skip: u32,
    },
}

/// How a run mixes its steps: which pages the accesses use, which programs run, and the
/// weight of each kind of step.
#[derive(Clone, Copy)]
struct Mix {
    pages: &'static [u32],
    /// Probability that a spawn or exec runs a program rather than none.
    program: f64,
    programs: usize,
    spawn: u32,
    fork: u32,
    write: u32,
    read: u32,
    touch: u32,
    exec: u32,
    kernel_write: u32,
    verify_area: u32,
    exit: u32,
    inject: u32,
}

/// Everything, over two programs, with failure injection.
const GENERAL: Mix = Mix {
    pages: &PAGES,
    program: 0.85,
    programs: 2,
    spawn: 2,
    fork: 3,
    write: 5,
    read: 5,
    touch: 1,
    exec: 3,
    kernel_write: 2,
    verify_area: 2,
    exit: 2,
    inject: 1,
};

/// Sharing-heavy: one program, two of its pages, many tasks faulting them in and
/// breaking copy-on-write with and without stores.
const SHARING: Mix = Mix {
    pages: &[0x1000, 0x2000],
    program: 0.95,
    programs: 1,
    spawn: 3,
    fork: 2,
    write: 2,
    read: 4,
    touch: 1,
    exec: 2,
    kernel_write: 1,
    verify_area: 3,
    exit: 1,
    inject: 1,
};

fn address(mix: Mix) -> impl Strategy<Value = u32> {
    (select(mix.pages), select(&WORDS[..])).prop_map(|(page, word)| page + word)
}

fn program_choice(mix: Mix) -> impl Strategy<Value = Option<usize>> {
    proptest::option::weighted(mix.program, 0..mix.programs)
}

fn step(mix: Mix) -> impl Strategy<Value = Step> {
    prop_oneof![
        mix.spawn => program_choice(mix).prop_map(|program| Step::Spawn { program }),
        mix.fork => any::<Index>().prop_map(|task| Step::Fork { task }),
        mix.write => (any::<Index>(), address(mix), any::<u32>()).prop_map(|(task, at, value)| Step::Write { task, at, value }),
        mix.read => (any::<Index>(), address(mix)).prop_map(|(task, at)| Step::Read { task, at }),
        mix.touch => (any::<Index>(), 0..TOUCH_PAGES, any::<u32>()).prop_map(|(task, page, value)| Step::Touch { task, page, value }),
        mix.exec => (any::<Index>(), program_choice(mix)).prop_map(|(task, program)| Step::Exec { task, program }),
        mix.kernel_write => (any::<Index>(), address(mix), any::<u32>()).prop_map(|(task, at, value)| Step::KernelWrite { task, at, value }),
        mix.verify_area => (any::<Index>(), address(mix)).prop_map(|(task, at)| Step::VerifyArea { task, at }),
        mix.exit => any::<Index>().prop_map(|task| Step::Exit { task }),
        mix.inject => (0..AllocSite::ALL.len(), 0..6u32).prop_map(|(site, skip)| Step::Inject { site, skip }),
    ]
}

/// RAM sizes: roomy, and small enough that forks and faults run out of memory.
fn ram() -> impl Strategy<Value = u32> {
    prop_oneof![Just(2 * MIB), (6u32..48).prop_map(ram_with_frames)]
}

/// What one task must read: its program's bytes, overlaid by what it (or the parent it
/// was forked from) wrote since the last exec.
#[derive(Clone, Debug)]
struct ModelTask {
    program: Option<usize>,
    written: BTreeMap<u32, u32>,
}

impl ModelTask {
    fn expected(&self, programs: &[Rc<Program>], at: u32) -> u32 {
        let program = self.program.map(|p| &*programs[p]);
        self.written
            .get(&at)
            .copied()
            .unwrap_or_else(|| initial_word(program, at))
    }
}

struct Run {
    k: SimKernel,
    model: BTreeMap<usize, ModelTask>,
    programs: [Rc<Program>; 2],
}

impl Run {
    /// The live task an index picks; when none is left, a new one runs the first program.
    fn pick(&mut self, index: &Index) -> Option<usize> {
        if self.model.is_empty() {
            self.spawn(Some(0));
        }
        let slots: Vec<usize> = self.model.keys().copied().collect();
        (!slots.is_empty()).then(|| slots[index.index(slots.len())])
    }

    fn spawn(&mut self, program: Option<usize>) {
        if let Ok(slot) = self.k.spawn(program.map(|p| self.programs[p].clone())) {
            self.model.insert(
                slot,
                ModelTask {
                    program,
                    written: BTreeMap::new(),
                },
            );
        }
    }

    /// Applies an access result: a task killed by out-of-memory leaves the model too.
    fn settle<T>(&mut self, slot: usize, result: Result<T, SimError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(SimError::Killed) => {
                self.model.remove(&slot);
                None
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    fn apply(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match *step {
            Step::Spawn { program } => self.spawn(program),
            Step::Fork { ref task } => {
                let Some(parent) = self.pick(task) else {
                    return Ok(());
                };
                match self.k.fork(parent) {
                    Ok(child) => {
                        let copy = self.model[&parent].clone();
                        self.model.insert(child, copy);
                    }
                    Err(SimError::NoMemory(_) | SimError::NoSlot) => {}
                    Err(e) => panic!("fork: {e:?}"),
                }
            }
            Step::Write {
                ref task,
                at,
                value,
            } => {
                let Some(slot) = self.pick(task) else {
                    return Ok(());
                };
                let r = self.k.write_word(slot, at, value);
                if self.settle(slot, r).is_some() {
                    self.model.get_mut(&slot).unwrap().written.insert(at, value);
                }
            }
            Step::Touch {
                ref task,
                page,
                value,
            } => {
                let Some(slot) = self.pick(task) else {
                    return Ok(());
                };
                let at = TOUCH_BASE + page * PAGE_SIZE + (page % 1024) * 4;
                let r = self.k.write_word(slot, at, value);
                if self.settle(slot, r).is_some() {
                    self.model.get_mut(&slot).unwrap().written.insert(at, value);
                }
            }
            Step::KernelWrite {
                ref task,
                at,
                value,
            } => {
                let Some(slot) = self.pick(task) else {
                    return Ok(());
                };
                let r = self.k.kernel_write_word(slot, at, value);
                if self.settle(slot, r).is_some() {
                    self.model.get_mut(&slot).unwrap().written.insert(at, value);
                }
            }
            Step::Read { ref task, at } => {
                let Some(slot) = self.pick(task) else {
                    return Ok(());
                };
                let r = self.k.read_word(slot, at);
                if let Some(value) = self.settle(slot, r) {
                    let expected = self.model[&slot].expected(&self.programs, at);
                    prop_assert_eq!(value, expected, "slot {} read at {:#x}", slot, at);
                }
            }
            Step::VerifyArea { ref task, at } => {
                let Some(slot) = self.pick(task) else {
                    return Ok(());
                };
                let r = self.k.verify_area(slot, at);
                self.settle(slot, r);
            }
            Step::Exec { ref task, program } => {
                let Some(slot) = self.pick(task) else {
                    return Ok(());
                };
                let program_rc = program.map(|p| self.programs[p].clone());
                // An injected failure at site execve changes nothing: the task goes on.
                if let Err(e) = self.k.exec(slot, program_rc) {
                    prop_assert_eq!(e, SimError::NoMemory(abi::errno::ENOMEM));
                    return Ok(());
                }
                self.model.insert(
                    slot,
                    ModelTask {
                        program,
                        written: BTreeMap::new(),
                    },
                );
            }
            Step::Exit { ref task } => {
                let Some(slot) = self.pick(task) else {
                    return Ok(());
                };
                self.k.exit(slot);
                self.model.remove(&slot);
            }
            Step::Inject { site, skip } => {
                self.k.policy = Injector::fail_after(Some(AllocSite::ALL[site]), skip);
            }
        }
        Ok(())
    }

    /// The invariants after every step: the task table matches the model, checkmm is
    /// clean, and every live task sees exactly the model's words (a page not present
    /// must be one the task never wrote: it will fault in as the program or zeroes).
    fn check(&self) -> Result<(), TestCaseError> {
        let slots: Vec<usize> = self.model.keys().copied().collect();
        prop_assert_eq!(self.k.live_slots(), slots);
        let mismatches = self.k.checkmm();
        prop_assert!(mismatches.is_empty(), "checkmm: {:#?}", mismatches);
        let mut addresses: BTreeSet<u32> = PAGES
            .iter()
            .flat_map(|p| WORDS.iter().map(move |w| p + w))
            .collect();
        for task in self.model.values() {
            addresses.extend(task.written.keys());
        }
        for (&slot, task) in &self.model {
            let program = task.program.map(|p| &*self.programs[p]);
            for &at in &addresses {
                let expected = task.expected(&self.programs, at);
                let seen = self
                    .k
                    .peek_word(slot, at)
                    .unwrap_or_else(|| initial_word(program, at));
                prop_assert_eq!(seen, expected, "slot {} at {:#x}", slot, at);
            }
        }
        Ok(())
    }
}

fn run(ram: u32, steps: &[Step]) -> Result<(), TestCaseError> {
    run_on(SimKernel::new(ram), steps)
}

/// The same invariants on a machine with a swap disk: every task still reads its own
/// data (swapped out and back, or dropped and reloaded), and at the end no frame and no
/// swap slot is left in use. Readers are let in (`PhysMem::open_reader_window`): checkmm
/// is clean over every state a window opens on, and nothing they see changes inside one.
fn run_with_swap(ram: u32, swap_pages: u32, steps: &[Step]) -> Result<(), TestCaseError> {
    run_on(SimKernel::new(ram).with_swap(swap_pages), steps)
}

/// The task table as the reader windows' checkmm needs it: the live slots and the
/// kernel's own frames, as of the step under way (a window opens only inside a fault,
/// which changes neither).
type TaskTableNow = Rc<RefCell<(Vec<usize>, Vec<Frame>)>>;

fn let_readers_in(k: &mut SimKernel) -> TaskTableNow {
    let now: TaskTableNow = Rc::default();
    let seen = now.clone();
    let windows = &mut k.mm.phys.reader_windows;
    windows.let_in = true;
    windows.on_open = Some(Rc::new(move |mm| {
        let (live, refs) = &*seen.borrow();
        let found = checkmm_of(mm, live, refs);
        assert!(found.is_empty(), "a reader window opened on {found:#?}");
    }));
    now
}

fn run_on(k: SimKernel, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut r = Run {
        k,
        model: BTreeMap::new(),
        programs: programs(),
    };
    let baseline = r.k.free_frames();
    let task_table = r.k.mm.swap.is_some().then(|| let_readers_in(&mut r.k));
    r.spawn(Some(0));
    for (i, step) in steps.iter().enumerate() {
        if let Some(now) = &task_table {
            *now.borrow_mut() = (r.k.live_slots(), r.k.kernel_refs());
        }
        r.apply(step)
            .map_err(|e| TestCaseError::fail(format!("step {i} {step:?}: {e}")))?;
        r.check()
            .map_err(|e| TestCaseError::fail(format!("after step {i} {step:?}: {e}")))?;
    }
    for slot in r.k.live_slots() {
        r.k.exit(slot);
    }
    r.model.clear();
    r.check()?;
    prop_assert_eq!(r.k.free_frames(), baseline, "frames leaked");
    if let Some(swap) = r.k.mm.swap.as_ref() {
        prop_assert_eq!(swap.nr_used(), 0, "swap slots leaked");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_task_reads_what_the_model_says_checkmm_stays_clean_and_nothing_leaks(
        ram in ram(),
        steps in prop::collection::vec(step(GENERAL), 1..60),
    ) {
        run(ram, &steps)?;
    }



    #[test]
    fn tasks_running_one_program_never_see_each_others_writes_through_sharing(
        steps in prop::collection::vec(step(SHARING), 1..60),
    ) {
        run(2 * MIB, &steps)?;
    }
}

proptest! {
    // Fewer cases: every allocation under pressure scans the page tables (swap_out).
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn with_swap_under_memory_pressure_every_task_still_reads_its_own_data(
        frames in 6u32..24,
        swap_pages in prop_oneof![Just(25u32), 64u32..512],
        steps in prop::collection::vec(step(GENERAL), 1..60),
    ) {
        run_with_swap(ram_with_frames(frames), swap_pages, &steps)?;
    }
}

/// One operation on `mem_map`: take the highest free frame, or drop / add a reference to
/// a frame already taken.
#[derive(Clone, Debug)]
enum MapOp {
    Take,
    Free(Index),
    Share(Index),
}

fn map_op() -> impl Strategy<Value = MapOp> {
    prop_oneof![
        3 => Just(MapOp::Take),
        2 => any::<Index>().prop_map(MapOp::Free),
        1 => any::<Index>().prop_map(MapOp::Share),
    ]
}

fn check_bitmap_against_scan(
    start_pages: u32,
    pages: u32,
    ops: &[MapOp],
) -> Result<(), TestCaseError> {
    let end = (u64::from(LOW_MEM) + u64::from(start_pages + pages) * u64::from(PAGE_SIZE))
        .min(u64::from(MAX_HIGH_MEMORY)) as u32;
    let mut map = MemMap::new();
    map.mem_init(LOW_MEM + start_pages * PAGE_SIZE, end);
    let mut held = Vec::new();
    for op in ops {
        match op {
            MapOp::Take => {
                let reference = map.scan_highest_free_0_11().map(|i| map.frame_of(i));
                let taken = map.take_highest_free();
                prop_assert_eq!(taken, reference);
                held.extend(taken);
            }
            MapOp::Free(i) if !held.is_empty() => {
                let f = held.swap_remove(i.index(held.len()));
                map.decrement(f).unwrap();
            }
            MapOp::Share(i) if !held.is_empty() => {
                let f = held[i.index(held.len())];
                if map.increment(f).is_ok() {
                    held.push(f);
                }
            }
            _ => {}
        }
        prop_assert_eq!(map.first_index_out_of_sync(), None);
        prop_assert_eq!(
            map.nr_free(),
            map.counts().iter().filter(|&&c| c == 0).count()
        );
        prop_assert_eq!(map.highest_free_index(), map.scan_highest_free_0_11());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn bitmap_search_returns_the_frame_of_the_0_11_linear_scan(
        start_pages in 0u32..80,
        pages in 1u32..2200,
        ops in prop::collection::vec(map_op(), 1..300),
    ) {
        check_bitmap_against_scan(start_pages, pages, &ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// The largest `mem_map` (64 MiB): every summary word of the bitmap is in play.
    #[test]
    fn bitmap_search_matches_the_scan_on_the_largest_mem_map(
        start_pages in 0u32..4000,
        ops in prop::collection::vec(map_op(), 1..200),
    ) {
        check_bitmap_against_scan(start_pages, MAX_HIGH_MEMORY / PAGE_SIZE, &ops)?;
    }
}
