//! Build script: hands the user programs' linker script (link at address 0) to the linker by absolute path.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let script = manifest_dir.join("link.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-changed=build.rs");
    // Only the i386 build makes user programs; a host `cargo check --workspace` must
    // not link host binaries at address 0.
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86") {
        // Absolute path: lld resolves a relative `-T` from its own working directory.
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        // A static executable without a program interpreter, whatever the target's
        // defaults: the kernel has no dynamic loader.
        println!("cargo:rustc-link-arg-bins=-static");
    }
}
