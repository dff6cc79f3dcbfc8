//! Gives `libboxlite.so` its soname, `libboxlite.so.0` (the ABI's major version).

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libboxlite.so.0");
    println!("cargo:rerun-if-changed=build.rs");
}
