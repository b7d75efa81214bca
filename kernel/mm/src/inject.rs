//! Failure injection with Linux's knobs (`lib/fault-inject.c`): per allocation site a
//! probability, an interval, a number of times, a space budget and a task filter, a
//! seeded random choice, and per-task `fail-nth`.
//!
//! The [`Injector`] is the [`FailurePolicy`] the paging code consults before
//! `get_free_page` changes anything, so an injected failure leaves no trace but the
//! error the caller handles like real exhaustion.

use crate::addr::{NR_TASKS, PAGE_SIZE};
use crate::memory::{AllocSite, FailurePolicy};
use core::fmt;

const SITES: usize = AllocSite::ALL.len();

/// Linux's knobs for one failure site (`/sys/kernel/debug/<capability>/...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultAttr {
    /// Percent chance that an eligible call fails (0 disables the site).
    pub probability: u8,
    /// Only every `interval`th eligible call may fail (0 or 1: every call).
    pub interval: u32,
    /// How many failures at most; -1 = unlimited; 0 = none left.
    pub times: i32,
    /// A budget of bytes consumed before failures start.
    pub space: u32,
    /// Only tasks marked `make-it-fail` are eligible.
    pub task_filter: bool,
}

impl FaultAttr {
    /// A disabled site (Linux's defaults: probability 0, interval 1, times 1).
    pub const OFF: FaultAttr = FaultAttr {
        probability: 0,
        interval: 1,
        times: 1,
        space: 0,
        task_filter: false,
    };
}

impl Default for FaultAttr {
    fn default() -> Self {
        FaultAttr::OFF
    }
}

/// Why a knob setting was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectError {
    /// Probability above 100.
    Probability(u32),
    /// `times` below -1.
    Times(i32),
    /// No such task slot.
    Slot(usize),
    /// No site of that name.
    UnknownSite,
}

impl fmt::Display for InjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InjectError::Probability(p) => {
                write!(f, "probability {p} is not a percentage (0..=100)")
            }
            InjectError::Times(t) => write!(f, "times {t}: use -1 for unlimited or a count >= 0"),
            InjectError::Slot(s) => write!(f, "task slot {s} does not exist"),
            InjectError::UnknownSite => f.write_str("unknown failure site"),
        }
    }
}

/// One site's knobs and what they have done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteState {
    pub attr: FaultAttr,
    /// Eligible calls counted for `interval` (Linux `attr->count`).
    count: u32,
    /// Space left before failures start.
    space_left: u32,
    /// Failures left (-1 unlimited).
    times_left: i32,
    /// Calls that reached the site.
    pub calls: u64,
    /// Failures injected at the site.
    pub fired: u64,
}

impl SiteState {
    /// Eligible calls counted for `interval`.
    pub fn count(&self) -> u32 {
        self.count
    }
    /// Space left before failures start.
    pub fn space_left(&self) -> u32 {
        self.space_left
    }
    /// Failures left (-1 unlimited).
    pub fn times_left(&self) -> i32 {
        self.times_left
    }
}

/// Per-task state (Linux `task->make_it_fail`, `task->fail_nth`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskFailState {
    pub make_it_fail: bool,
    /// Non-zero: the task's `fail_nth`-th eligible allocation fails (counting down).
    pub fail_nth: u32,
}

/// The last injected failure, for `monitor fail` and verbose logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fired {
    pub site: AllocSite,
    pub slot: usize,
    /// Injected by `fail_nth` rather than the site's knobs.
    pub by_fail_nth: bool,
}

/// xorshift64*: a small seeded generator (Linux uses `get_random_u32_below`); the same
/// seed gives the same failures, so a campaign's failing seed reproduces exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // Zero is xorshift's fixed point: map it to a fixed non-zero state.
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }
    fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }
    /// A value below `bound` (Lemire's multiply-shift, bias below 2^-32 * bound).
    fn below(&mut self, bound: u32) -> u32 {
        ((u64::from(self.next_u32()) * u64::from(bound)) >> 32) as u32
    }
}

/// The failure-injection state of the kernel.
#[derive(Clone, Debug)]
pub struct Injector {
    sites: [SiteState; SITES],
    tasks: [TaskFailState; NR_TASKS],
    /// The task on whose behalf the paging code runs (set by the scheduler).
    current: usize,
    seed: u64,
    rng: Rng,
    pub last: Option<Fired>,
    /// What changed since [`Injector::take_changes`]: bit n of `changed_sites` for site
    /// index n, bit n of `changed_tasks` for task slot n (a publisher copies only those).
    changed_sites: u32,
    changed_tasks: u64,
    /// The seed, the generator, `current` or `last`.
    changed_global: bool,
}

/// Which parts of an [`Injector`] changed since the last [`Injector::take_changes`] (all of
/// them for a new one): bit n of `sites` is site index n, bit n of `tasks` is slot n.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InjectorChanges {
    pub sites: u32,
    pub tasks: u64,
    /// The seed, the generator's state, `current` or `last` changed.
    pub global: bool,
}

impl Default for Injector {
    fn default() -> Self {
        Injector::new(0)
    }
}

impl Injector {
    /// Every site off, random choices from `seed`.
    pub fn new(seed: u64) -> Injector {
        let off = SiteState {
            attr: FaultAttr::OFF,
            times_left: FaultAttr::OFF.times,
            ..SiteState::default()
        };
        Injector {
            sites: [off; SITES],
            tasks: [TaskFailState::default(); NR_TASKS],
            current: 0,
            seed,
            rng: Rng::new(seed),
            last: None,
            changed_sites: u32::MAX,
            changed_tasks: u64::MAX,
            changed_global: true,
        }
    }

    /// Sets a site's knobs; its counters (interval count, space, times) restart.
    pub fn configure(&mut self, site: AllocSite, attr: FaultAttr) -> Result<(), InjectError> {
        if attr.probability > 100 {
            return Err(InjectError::Probability(attr.probability.into()));
        }
        if attr.times < -1 {
            return Err(InjectError::Times(attr.times));
        }
        self.changed_sites |= 1 << site.index();
        let state = &mut self.sites[site.index()];
        state.attr = attr;
        state.count = 0;
        state.space_left = attr.space;
        state.times_left = attr.times;
        Ok(())
    }

    /// A site's knobs and counters.
    pub fn site(&self, site: AllocSite) -> &SiteState {
        &self.sites[site.index()]
    }

    /// Failures still allowed at a site (-1: unlimited).
    pub fn times_left(&self, site: AllocSite) -> i32 {
        self.sites[site.index()].times_left
    }

    /// Restarts the random choices from `seed`.
    pub fn set_seed(&mut self, seed: u64) {
        self.changed_global = true;
        self.seed = seed;
        self.rng = Rng::new(seed);
    }
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// The generator's state (what the next random choice starts from).
    pub fn rng_state(&self) -> u64 {
        self.rng.0
    }

    /// Whether any site was armed (`probability` above 0) or any failure injected
    /// (`fail_nth` too): then a run's end reports [`Injector::record`].
    pub fn was_used(&self) -> bool {
        self.sites
            .iter()
            .any(|s| s.attr.probability > 0 || s.fired > 0)
    }

    /// What the injection did, per site that was armed or fired, for the end of a run:
    /// `copy_page_tables failed 3 of 41 calls, do_no_page failed 0 of 9 calls`.
    pub fn record(&self) -> Record<'_> {
        Record(self)
    }

    /// The task slot allocations are made for from now on.
    pub fn set_current(&mut self, slot: usize) {
        self.changed_global = true;
        self.current = slot.min(NR_TASKS - 1);
    }
    pub fn current(&self) -> usize {
        self.current
    }

    /// Per-task state of `slot`.
    pub fn task(&self, slot: usize) -> Result<&TaskFailState, InjectError> {
        self.tasks.get(slot).ok_or(InjectError::Slot(slot))
    }
    pub fn task_mut(&mut self, slot: usize) -> Result<&mut TaskFailState, InjectError> {
        self.changed_tasks |= 1u64.checked_shl(slot as u32).unwrap_or(0);
        self.tasks.get_mut(slot).ok_or(InjectError::Slot(slot))
    }

    /// A new task in `slot`, forked from `parent`: `make-it-fail` is inherited, `fail_nth`
    /// is not (as Linux's `dup_task_struct`).
    pub fn fork_task(&mut self, parent: usize, slot: usize) {
        let make_it_fail = self.tasks.get(parent).is_some_and(|t| t.make_it_fail);
        self.changed_tasks |= 1u64.checked_shl(slot as u32).unwrap_or(0);
        if let Some(t) = self.tasks.get_mut(slot) {
            *t = TaskFailState {
                make_it_fail,
                fail_nth: 0,
            };
        }
    }

    /// A task slot that is free again.
    pub fn release_task(&mut self, slot: usize) {
        self.changed_tasks |= 1u64.checked_shl(slot as u32).unwrap_or(0);
        if let Some(t) = self.tasks.get_mut(slot) {
            *t = TaskFailState::default();
        }
    }

    /// What changed since the last call (everything, the first time), and starts afresh.
    pub fn take_changes(&mut self) -> InjectorChanges {
        let changes = InjectorChanges {
            sites: self.changed_sites,
            tasks: self.changed_tasks,
            global: self.changed_global,
        };
        self.changed_sites = 0;
        self.changed_tasks = 0;
        self.changed_global = false;
        changes
    }

    /// Linux `should_fail_ex(attr, PAGE_SIZE, 0)` for an allocation at `site` by the
    /// current task: `fail_nth` first, then probability, task filter, times, space,
    /// interval and the random draw, in Linux's order.
    pub fn should_fail_at(&mut self, site: AllocSite) -> bool {
        let slot = self.current;
        self.changed_sites |= 1 << site.index();
        let state = &mut self.sites[site.index()];
        state.calls += 1;
        // Task 0 is the kernel itself (not "in_task" for our purposes).
        if slot != 0 {
            let task = &mut self.tasks[slot];
            if task.fail_nth != 0 {
                self.changed_tasks |= 1 << slot;
                task.fail_nth -= 1;
                if task.fail_nth == 0 {
                    return self.fire(site, slot, true);
                }
                return false;
            }
        }
        let attr = state.attr;
        if attr.probability == 0 {
            return false;
        }
        if attr.task_filter && (slot == 0 || !self.tasks[slot].make_it_fail) {
            return false;
        }
        if state.times_left == 0 {
            return false;
        }
        if state.space_left > PAGE_SIZE {
            state.space_left -= PAGE_SIZE;
            return false;
        }
        if attr.interval > 1 {
            state.count = state.count.wrapping_add(1);
            if !state.count.is_multiple_of(attr.interval) {
                return false;
            }
        }
        self.changed_global = true;
        if u32::from(attr.probability) <= self.rng.below(100) {
            return false;
        }
        self.fire(site, slot, false)
    }

    fn fire(&mut self, site: AllocSite, slot: usize, by_fail_nth: bool) -> bool {
        let state = &mut self.sites[site.index()];
        // Linux decrements `times` on every injected failure, fail-nth ones included.
        if state.times_left > 0 {
            state.times_left -= 1;
        }
        state.fired += 1;
        self.changed_global = true;
        self.last = Some(Fired {
            site,
            slot,
            by_fail_nth,
        });
        true
    }
}

/// [`Injector::record`]'s text (`fmt::Display`, no allocation: the kernel prints it).
pub struct Record<'a>(&'a Injector);

impl fmt::Display for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut separator = "";
        for site in AllocSite::ALL {
            let state = self.0.site(site);
            if state.attr.probability > 0 || state.fired > 0 {
                write!(
                    f,
                    "{separator}{} failed {} of {} calls",
                    site.name(),
                    state.fired,
                    state.calls
                )?;
                separator = ", ";
            }
        }
        if separator.is_empty() {
            f.write_str("no site armed")?;
        }
        Ok(())
    }
}

impl FailurePolicy for Injector {
    fn should_fail(&mut self, site: AllocSite) -> bool {
        self.should_fail_at(site)
    }
}

/// The site called `name` (`AllocSite::name`).
pub fn site_by_name(name: &str) -> Result<AllocSite, InjectError> {
    AllocSite::ALL
        .iter()
        .copied()
        .find(|s| s.name() == name)
        .ok_or(InjectError::UnknownSite)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn always(times: i32) -> FaultAttr {
        FaultAttr {
            probability: 100,
            interval: 1,
            times,
            space: 0,
            task_filter: false,
        }
    }

    #[test]
    fn the_record_names_each_armed_or_fired_site_with_its_counts() {
        let mut inj = Injector::new(1);
        assert!(!inj.was_used());
        assert_eq!(std::format!("{}", inj.record()), "no site armed");
        inj.set_current(3);
        inj.configure(AllocSite::CowCopy, always(1)).unwrap();
        assert!(inj.was_used(), "armed, nothing fired yet");
        assert!(inj.should_fail_at(AllocSite::CowCopy));
        assert!(!inj.should_fail_at(AllocSite::CowCopy), "times 1");
        // fail_nth fires at a site that is not armed: that site is in the record too.
        inj.task_mut(3).unwrap().fail_nth = 1;
        assert!(inj.should_fail_at(AllocSite::NoPage));
        inj.should_fail_at(AllocSite::PageTable);
        assert_eq!(
            std::format!("{}", inj.record()),
            "un_wp_page failed 1 of 2 calls, do_no_page failed 1 of 1 calls"
        );
    }

    #[test]
    fn a_disabled_site_never_fails_and_counts_calls() {
        let mut inj = Injector::new(1);
        inj.set_current(3);
        assert!(!(0..100).any(|_| inj.should_fail_at(AllocSite::CowCopy)));
        assert_eq!(inj.site(AllocSite::CowCopy).calls, 100);
        assert_eq!(inj.site(AllocSite::CowCopy).fired, 0);
    }

    #[test]
    fn times_limits_the_failures_and_minus_one_is_unlimited() {
        let mut inj = Injector::new(1);
        inj.set_current(1);
        inj.configure(AllocSite::NoPage, always(2)).unwrap();
        let fails: Vec<bool> = (0..5)
            .map(|_| inj.should_fail_at(AllocSite::NoPage))
            .collect();
        assert_eq!(fails, [true, true, false, false, false]);
        inj.configure(AllocSite::NoPage, always(-1)).unwrap();
        assert!((0..50).all(|_| inj.should_fail_at(AllocSite::NoPage)));
        assert_eq!(inj.times_left(AllocSite::NoPage), -1);
    }

    #[test]
    fn interval_fails_every_nth_eligible_call() {
        let mut inj = Injector::new(1);
        inj.set_current(1);
        inj.configure(
            AllocSite::PageTable,
            FaultAttr {
                interval: 3,
                ..always(-1)
            },
        )
        .unwrap();
        let fails: Vec<bool> = (0..7)
            .map(|_| inj.should_fail_at(AllocSite::PageTable))
            .collect();
        assert_eq!(fails, [false, false, true, false, false, true, false]);
    }

    #[test]
    fn space_is_consumed_page_by_page_before_failures_start() {
        let mut inj = Injector::new(1);
        inj.set_current(1);
        inj.configure(
            AllocSite::CopyPageTables,
            FaultAttr {
                space: 3 * PAGE_SIZE,
                ..always(-1)
            },
        )
        .unwrap();
        let fails: Vec<bool> = (0..4)
            .map(|_| inj.should_fail_at(AllocSite::CopyPageTables))
            .collect();
        // 3 pages of budget: 12288 > 4096 twice, then 4096 is not > 4096: fails.
        assert_eq!(fails, [false, false, true, true]);
    }

    #[test]
    fn the_task_filter_spares_tasks_not_marked() {
        let mut inj = Injector::new(1);
        inj.configure(
            AllocSite::NoPage,
            FaultAttr {
                task_filter: true,
                ..always(-1)
            },
        )
        .unwrap();
        inj.set_current(2);
        assert!(!inj.should_fail_at(AllocSite::NoPage));
        inj.task_mut(2).unwrap().make_it_fail = true;
        assert!(inj.should_fail_at(AllocSite::NoPage));
        inj.fork_task(2, 5);
        assert!(
            inj.task(5).unwrap().make_it_fail,
            "make-it-fail is inherited"
        );
        inj.set_current(0);
        assert!(
            !inj.should_fail_at(AllocSite::NoPage),
            "never the kernel's own task 0"
        );
    }

    #[test]
    fn fail_nth_fails_exactly_the_nth_allocation_of_that_task() {
        let mut inj = Injector::new(1);
        inj.set_current(4);
        inj.task_mut(4).unwrap().fail_nth = 3;
        let fails: Vec<bool> = [
            AllocSite::TaskStruct,
            AllocSite::CopyPageTables,
            AllocSite::PageTable,
            AllocSite::NoPage,
        ]
        .into_iter()
        .map(|s| inj.should_fail_at(s))
        .collect();
        assert_eq!(fails, [false, false, true, false]);
        assert_eq!(
            inj.last,
            Some(Fired {
                site: AllocSite::PageTable,
                slot: 4,
                by_fail_nth: true
            })
        );
        assert_eq!(inj.task(4).unwrap().fail_nth, 0);
        inj.task_mut(4).unwrap().fail_nth = 2;
        inj.fork_task(4, 6);
        assert_eq!(
            inj.task(6).unwrap().fail_nth,
            0,
            "fail-nth is not inherited"
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_failures() {
        let run = |seed| {
            let mut inj = Injector::new(seed);
            inj.set_current(1);
            inj.configure(
                AllocSite::CowCopy,
                FaultAttr {
                    probability: 30,
                    ..always(-1)
                },
            )
            .unwrap();
            (0..200)
                .map(|_| inj.should_fail_at(AllocSite::CowCopy))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
        let hits = run(42).iter().filter(|&&f| f).count();
        assert!((30..90).contains(&hits), "about 30% of 200: {hits}");
    }

    #[test]
    fn bad_knobs_are_refused() {
        let mut inj = Injector::new(1);
        assert_eq!(
            inj.configure(
                AllocSite::NoPage,
                FaultAttr {
                    probability: 101,
                    ..FaultAttr::OFF
                }
            ),
            Err(InjectError::Probability(101))
        );
        assert_eq!(
            inj.configure(
                AllocSite::NoPage,
                FaultAttr {
                    times: -2,
                    ..FaultAttr::OFF
                }
            ),
            Err(InjectError::Times(-2))
        );
        assert_eq!(inj.task(64).err(), Some(InjectError::Slot(64)));
        assert_eq!(site_by_name("un_wp_page"), Ok(AllocSite::CowCopy));
        assert_eq!(site_by_name("nope"), Err(InjectError::UnknownSite));
    }

    #[test]
    fn changes_name_what_changed_since_they_were_last_taken() {
        let mut inj = Injector::new(5);
        let first = inj.take_changes();
        assert!(first.global && first.sites == u32::MAX && first.tasks == u64::MAX);
        assert_eq!(
            inj.take_changes(),
            InjectorChanges {
                sites: 0,
                tasks: 0,
                global: false
            }
        );
        inj.set_current(4);
        inj.should_fail_at(AllocSite::NoPage);
        let c = inj.take_changes();
        assert!(c.global, "set_current");
        assert_eq!(c.sites, 1 << AllocSite::NoPage.index());
        assert_eq!(c.tasks, 0);
        inj.task_mut(9).unwrap().fail_nth = 2;
        inj.fork_task(9, 10);
        inj.release_task(11);
        inj.configure(AllocSite::CowCopy, always(1)).unwrap();
        let c = inj.take_changes();
        assert_eq!(c.tasks, (1 << 9) | (1 << 10) | (1 << 11));
        assert_eq!(c.sites, 1 << AllocSite::CowCopy.index());
        assert!(!c.global);
        inj.set_current(9);
        inj.take_changes();
        // fail_nth counting down in the current task and the random draw of an armed site.
        assert!(!inj.should_fail_at(AllocSite::CowCopy));
        let c = inj.take_changes();
        assert_eq!(c.tasks, 1 << 9);
        assert!(inj.should_fail_at(AllocSite::CowCopy));
        assert!(inj.take_changes().global, "fire sets last");
    }
}
