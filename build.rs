//! Link tugboat with packed relative relocations (RELR) on Linux with glibc.
//!
//! A position-independent Rust binary carries one 24-byte relocation per pointer in its
//! read-only data (vtables, string tables): 1.6 MB of `.rela.dyn` for tugboat, which the
//! loader reads whole at every start, so it stays in the resident set. RELR packs the same
//! relocations into a few kilobytes. GNU ld (2.38+) and lld apply it only when the C library
//! supports it (glibc 2.36+) and ignore it otherwise, with a warning from older linkers.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
