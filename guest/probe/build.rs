//! Links both probe binaries with `link.ld` (everything at physical = virtual
//! 1 MiB) as non-PIE executables.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-bins=-T{dir}/link.ld");
    // The loader applies no relocations, so the image must not be PIE even if
    // RUSTFLAGS overrides .cargo/config.toml's relocation-model=static.
    println!("cargo:rustc-link-arg-bins=--no-pie");
}
