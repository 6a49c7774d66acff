//! Bakes libtorch's library folder (from torch-sys, i.e. the `.venv` wheel when built with
//! `LIBTORCH_USE_PYTORCH=1`) into the rpath of every binary and test, so `zoo` runs without
//! the user exporting `LD_LIBRARY_PATH`.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        println!("cargo:rustc-env=ZOO_LIBTORCH_LIB={lib}");
    }
}
