//! Bakes libtorch's library folder (from torch-sys, i.e. the `.venv` wheel when built with
//! `LIBTORCH_USE_PYTORCH=1`) into the rpath of every binary and test, so `zoo` runs without
//! the user exporting `LD_LIBRARY_PATH`; keeps libtorch_cuda linked where the wheel has it; and
//! compiles the C++ of `zoo/train/autocast.cpp`, `zoo/export/jit.cpp` (TorchScript tracing) and
//! `zoo/infer/onednn.cpp` (the `onednn` inference engine)
//! against libtorch's headers, with the
//! distributed-training shim `zoo/dist/c10d.cpp` (see `add_c10d`).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(zoo_c10d)");
    println!("cargo::rustc-check-cfg=cfg(zoo_nccl)");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=zoo/train/autocast.cpp");
    println!("cargo:rerun-if-changed=zoo/export/jit.cpp");
    println!("cargo:rerun-if-changed=zoo/infer/onednn.cpp");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        // The wheel's headers sit beside its lib/ folder; its ABI is the C++11 one. Both shims
        // are one library, compiled in parallel (most of the time goes to parsing libtorch's
        // headers; the code only calls into libtorch, so -O1 runs as fast and builds sooner).
        let include = std::path::Path::new(&lib).join("../include");
        let mut build = cc::Build::new();
        build
            .cpp(true)
            .pic(true)
            .std("c++17")
            .include(&include)
            .define("_GLIBCXX_USE_CXX11_ABI", "1")
            .warnings(false)
            .opt_level(1)
            .include(include.join("torch/csrc/api/include"))
            .file("zoo/train/autocast.cpp")
            .file("zoo/export/jit.cpp")
            .file("zoo/infer/onednn.cpp");
        add_c10d(&mut build, std::path::Path::new(&lib));
        let openmp = add_openmp(&mut build, &include);
        build.compile("zoo_shim");
        if openmp {
            // GOMP_parallel and omp_get_thread_num: libgomp.so.1, found at run time in
            // libtorch's folder (the rpath below), so the shim's parallel loops share libtorch's
            // OpenMP thread pool rather than starting a second one.
            println!("cargo:rustc-link-lib=dylib=gomp");
        }
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        println!("cargo:rustc-env=ZOO_LIBTORCH_LIB={lib}");
        // Nothing in zoo calls libtorch_cuda directly, so the linker's --as-needed would drop
        // it and CUDA would look absent at run time (tch's known pitfall): link it regardless.
        if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}

/// Compiles the shim with OpenMP where libtorch was built with it (`AT_PARALLEL_OPENMP` in
/// ATen/Config.h). `at::parallel_for` is a header template whose OpenMP loop is compiled into its
/// caller: without `-fopenmp` the shim's own kernels (`zoo::cat_affine`, `zoo::max_pool2d_u8`)
/// would run on one thread, however many libtorch has. Returns whether it did.
fn add_openmp(build: &mut cc::Build, include: &std::path::Path) -> bool {
    let config = std::fs::read_to_string(include.join("ATen/Config.h")).unwrap_or_default();
    let openmp = config.lines().any(|l| l.split_whitespace().eq(["#define", "AT_PARALLEL_OPENMP", "1"]));
    if openmp {
        build.flag("-fopenmp");
    }
    openmp
}

/// Adds `zoo/dist/c10d.cpp` (TCPStore, ProcessGroupGloo, c10d::Reducer from the wheel's
/// libtorch_cpu) against the wheel's c10d headers and Debian's libgloo-dev headers (the wheel
/// ships none), and sets `cfg(zoo_c10d)`. Without the Gloo headers distributed training is left
/// out (`zoo` then says how to get it). NCCL (`cfg(zoo_nccl)`) is added where the wheel has
/// libtorch_cuda and the venv has `nccl.h` (nvidia-nccl) and the CUDA runtime headers.
fn add_c10d(build: &mut cc::Build, lib: &std::path::Path) {
    use std::path::PathBuf;
    println!("cargo:rerun-if-changed=zoo/dist/c10d.cpp");
    println!("cargo:rerun-if-env-changed=ZOO_GLOO_INCLUDE");
    let gloo = std::env::var_os("ZOO_GLOO_INCLUDE").map_or_else(|| PathBuf::from("/usr/include"), PathBuf::from);
    if !gloo.join("gloo/context.h").exists() {
        println!(
            "cargo:warning=no Gloo headers in {} (Debian: apt-get install libgloo-dev, or run tools/setup.sh): \
             zoo is built without distributed training",
            gloo.display()
        );
        return;
    }
    build.include(&gloo).define("USE_C10D_GLOO", None).define("USE_DISTRIBUTED", None).file("zoo/dist/c10d.cpp");
    // The nvidia-* wheels torch depends on sit beside torch/ in site-packages.
    let nvidia = lib.join("../../nvidia");
    let with_header = |name: &str| -> Option<PathBuf> {
        std::fs::read_dir(&nvidia).ok()?.flatten().map(|e| e.path().join("include")).find(|p| p.join(name).exists())
    };
    // CUDA 13's runtime wheel lacks crt/ and CCCL's nv/: nvidia-cuda-crt and nvidia-cuda-cccl.
    let cuda = with_header("cuda_runtime_api.h")
        .filter(|p| p.join("crt/host_config.h").exists() && p.join("nv/target").exists());
    let nccl = match (lib.join("libtorch_cuda.so").exists(), with_header("nccl.h"), cuda) {
        (true, Some(nccl), Some(cuda)) => Some((nccl, cuda)),
        (true, _, _) => {
            println!(
                "cargo:warning=libtorch has CUDA but the venv lacks nccl.h or the CUDA headers \
                 (tools/requirements-nodeps.txt): zoo is built without NCCL"
            );
            None
        }
        _ => None,
    };
    if let Some((nccl, cuda)) = &nccl {
        build.include(nccl).include(cuda).define("USE_C10D_NCCL", None).define("ZOO_NCCL", None);
        println!("cargo:rustc-cfg=zoo_nccl");
    }
    println!("cargo:rustc-cfg=zoo_c10d");
}
