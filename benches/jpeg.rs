//! `make bench`'s JPEG decoding, zoo's side (tools/bench_jpeg.py runs PIL's beside it): the
//! time to decode each JPEG of a folder to RGB on one thread, full size (bit-exact with PIL) and
//! with `--fast-decode`'s DCT-domain scaling for a resize to `SIDE`. Each figure is the best of
//! three passes over the folder after a warm-up pass, printed as one JSON line.
//!
//! Usage: cargo bench --bench jpeg -- FOLDER SIDE
use std::path::PathBuf;
use std::time::Instant;

use zoo::data::image::{load_rgb_with, DecodeLimits, DecodeOptions};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let [folder, side] = &args[..] else {
        eprintln!("usage: cargo bench --bench jpeg -- FOLDER SIDE");
        std::process::exit(2);
    };
    let side: u32 = side.parse().expect("SIDE is a number of pixels");
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(folder)
        .into_iter()
        .map(|e| e.expect("readable bench folder").into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .jpg files under {folder}");
    for (label, draft) in [("exact", None), ("fast", Some(side))] {
        let opts = DecodeOptions { limits: DecodeLimits::default(), draft };
        let pass = || {
            let t = Instant::now();
            for f in &files {
                std::hint::black_box(load_rgb_with(f, &opts).expect("bench JPEGs decode"));
            }
            t.elapsed().as_secs_f64()
        };
        pass();
        let best = (0..3).map(|_| pass()).fold(f64::INFINITY, f64::min);
        println!(
            "{{\"bench\": \"jpeg_decode\", \"decode\": \"{label}\", \"images\": {}, \"ms_per_image\": {:.3}}}",
            files.len(),
            best * 1e3 / files.len() as f64
        );
    }
}
