//! exec-sharing: two tasks running the same program share its clean pages (0.11's `share_page`).

use user::check::{expect_exit, spawn, Failed, Outcome};
use user::{execve, say, sleep};

use crate::util::SETTLE_TICKS;

/// Starts a child that execs `hello` with `arg`.
fn spawn_hello(arg: &'static str) -> Result<i32, Failed> {
    spawn(|| {
        let error = execve("hello", arg);
        say!("CHECK FAILED: execve(\"hello\", \"{arg}\") (expected success, found {error})");
        Err(Failed)
    })
}

/// exec-sharing: A runs `hello hold` (touches its table, then sleeps with the pages
/// mapped); B, started while A holds them, runs `hello report-shared 8`, which
/// requires 8 or more shared-page faults and a table page mapped read-only by two
/// tasks. Both must exit with 0.
pub fn exec_sharing() -> Outcome {
    let a = spawn_hello("hold")?;
    say!("A = {a} runs hello hold; letting it touch its pages");
    sleep(SETTLE_TICKS);
    let b = spawn_hello("report-shared 8")?;
    say!("B = {b} runs hello report-shared 8");
    expect_exit(b, 0, "B (hello report-shared 8)")?;
    expect_exit(a, 0, "A (hello hold)")
}
