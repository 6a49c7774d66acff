//! Bakes libtorch's library folder (from torch-sys, i.e. the `.venv` wheel when built with
//! `LIBTORCH_USE_PYTORCH=1`) into the rpath of every binary and test, so `zoo` runs without
//! the user exporting `LD_LIBRARY_PATH`; keeps libtorch_cuda linked where the wheel has it; and
//! compiles the C++ of `zoo/train/autocast.cpp` against libtorch's headers.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=zoo/train/autocast.cpp");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        // The wheel's headers sit beside its lib/ folder; its ABI is the C++11 one.
        let include = std::path::Path::new(&lib).join("../include");
        cc::Build::new()
            .cpp(true)
            .pic(true)
            .std("c++17")
            .include(&include)
            .define("_GLIBCXX_USE_CXX11_ABI", "1")
            .warnings(false)
            .file("zoo/train/autocast.cpp")
            .compile("zoo_autocast");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        println!("cargo:rustc-env=ZOO_LIBTORCH_LIB={lib}");
        // Nothing in zoo calls libtorch_cuda directly, so the linker's --as-needed would drop
        // it and CUDA would look absent at run time (tch's known pitfall): link it regardless.
        if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}
