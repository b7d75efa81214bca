//! A spin lock that masks interrupts while held: safe to take from handlers on one CPU.

use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};

use super::cpu;

/// A `spin::Mutex` whose `lock` disables interrupts first and restores them on unlock.
///
/// On a single CPU with interrupts off, a lock that is already held can only be held by
/// the code we interrupted or by ourselves (re-entry, e.g. a fault inside the critical
/// section): spinning would never end, so [`IrqMutex::lock`] panics instead.
pub struct IrqMutex<T> {
    inner: spin::Mutex<T>,
}

/// Access to the data of a locked [`IrqMutex`]; unlocks (then restores IF) on drop.
pub struct IrqMutexGuard<'a, T> {
    guard: ManuallyDrop<spin::MutexGuard<'a, T>>,
    restore_interrupts: bool,
}

impl<T> IrqMutex<T> {
    /// A new unlocked mutex.
    pub const fn new(value: T) -> Self {
        Self {
            inner: spin::Mutex::new(value),
        }
    }

    /// Disables interrupts and takes the lock. Panics if the lock is already held (a
    /// certain deadlock on one CPU).
    pub fn lock(&self) -> IrqMutexGuard<'_, T> {
        let restore_interrupts = cpu::interrupts_enabled();
        cpu::disable_interrupts();
        match self.inner.try_lock() {
            Some(guard) => IrqMutexGuard {
                guard: ManuallyDrop::new(guard),
                restore_interrupts,
            },
            None => panic!("IrqMutex already held: re-entered on the only CPU (deadlock)"),
        }
    }

    /// Whether the lock is held (for diagnostics).
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }
}

impl<T> Deref for IrqMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for IrqMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for IrqMutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: `guard` is dropped exactly once, here, and never used afterwards.
        // It must go before interrupts come back, or a handler could find it held.
        unsafe { ManuallyDrop::drop(&mut self.guard) };
        if self.restore_interrupts {
            cpu::enable_interrupts();
        }
    }
}

/// A spin lock around state the gdb stub reads while the kernel is stopped, perhaps
/// stopped by a breakpoint in code that holds this very lock (`do_wp_page` under the
/// paging lock). Kernel code takes it ([`StopLock::try_lock`]; the kernel is not
/// preemptible, so a held lock is a bug or the stub); the stub reads without it
/// ([`StopLock::peek`], with the proof that the kernel is stopped) and writes only
/// through `try_lock`, so a change of the stub's can never be lost under a holder's
/// `&mut`: it answers Busy instead.
pub struct StopLock<T> {
    inner: spin::mutex::SpinMutex<T>,
}

/// A held [`StopLock`].
pub type StopLockGuard<'a, T> = spin::mutex::SpinMutexGuard<'a, T>;

impl<T> StopLock<T> {
    pub const fn new(value: T) -> Self {
        Self {
            inner: spin::mutex::SpinMutex::new(value),
        }
    }

    /// The lock, or `None` when someone holds it.
    pub fn try_lock(&self) -> Option<StopLockGuard<'_, T>> {
        self.inner.try_lock()
    }

    /// The state as the stopped code left it, without the lock: the debugger's view. It
    /// may show a change the holder had half done (a breakpoint inside it).
    pub fn peek<'a>(&'a self, stopped: &'a super::debugger::Stopped) -> &'a T {
        stopped.check();
        // SAFETY: the kernel is stopped (the proof, checked just now): a holder of the
        // lock is frozen inside the trap the stub runs in and cannot write before the
        // stub returns, which ends 'a (the proof lives only inside the stub's call). The
        // stub itself changes the state only through `try_lock`, which fails while anyone
        // holds the lock, and it uses no reference from `peek` after such a change.
        unsafe { &*self.inner.as_mut_ptr() }
    }
}
