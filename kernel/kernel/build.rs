//! Build script: hands the kernel's linker script to the linker by absolute path.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let script = manifest_dir.join("linker.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-changed=build.rs");

    // An unoptimised build (the `stepping` profile of scripts/build --debug-build) keeps
    // every local and temporary in its own stack slot: the boot and stub stacks are sized
    // for it (`cfg(unoptimized)`, see arch/x86/boot.rs and debugger.rs).
    println!("cargo::rustc-check-cfg=cfg(unoptimized)");
    if env::var("OPT_LEVEL").as_deref() == Ok("0") {
        println!("cargo::rustc-cfg=unoptimized");
    }

    // Only the bare-metal i386 build is a kernel; a host build (e.g. `cargo check
    // --workspace`) must not be linked at 1 MiB with our script.
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if target_arch == "x86" {
        // Absolute path: lld resolves a relative `-T` from its own working directory,
        // which is not this crate's directory in a workspace build.
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        // No PT_GNU_RELRO: nothing remaps the kernel read-only after relocation.
        println!("cargo:rustc-link-arg-bins=-znorelro");
        // A build id, which the introspection descriptor carries (arch/x86/published.rs).
        println!("cargo:rustc-link-arg-bins=--build-id=sha1");
    }
}
