//! Mixed precision on CUDA: `f` runs with float16 autocast, as `tch::autocast` does, through
//! libtorch's current API (a few lines of C++ in `autocast.cpp`, compiled by build.rs). tch's own
//! function calls the deprecated `at::autocast::is_enabled()`, and libtorch 2.11 printed five
//! deprecation warnings per training step.

extern "C" {
    fn zoo_autocast_cuda_enabled() -> bool;
    fn zoo_autocast_set_cuda_enabled(enabled: bool);
    fn zoo_autocast_increment_nesting() -> std::os::raw::c_int;
    fn zoo_autocast_leave();
}

/// Runs `f` with CUDA autocast `enabled` (nothing changes where CUDA is absent), restoring the
/// previous state afterwards, also when `f` panics.
pub fn autocast<T>(enabled: bool, f: impl FnOnce() -> T) -> T {
    if !tch::Cuda::is_available() {
        return f();
    }
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: plain calls into libtorch's autocast state (thread-local there).
            unsafe {
                zoo_autocast_leave();
                zoo_autocast_set_cuda_enabled(self.0);
            }
        }
    }
    // SAFETY: as above.
    let _restore = unsafe {
        let previous = zoo_autocast_cuda_enabled();
        zoo_autocast_set_cuda_enabled(enabled);
        zoo_autocast_increment_nesting();
        Restore(previous)
    };
    f()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_state_is_restored_and_the_result_passed_through() {
        // On a CPU-only machine this is the pass-through path; on CUDA it checks the state.
        if !tch::Cuda::is_available() {
            eprintln!(
                "the_state_is_restored_and_the_result_passed_through: CUDA part SKIPPED (no CUDA device); \
                 only the CPU pass-through is checked. README.md (\"Tests that need hardware\") says where it runs."
            );
        }
        let inside = super::autocast(true, || unsafe { super::zoo_autocast_cuda_enabled() });
        assert_eq!(inside, tch::Cuda::is_available());
        assert!(!unsafe { super::zoo_autocast_cuda_enabled() });
        assert_eq!(super::autocast(false, || 42), 42);
    }
}
