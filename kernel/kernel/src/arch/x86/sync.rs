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
