//! Preparing batches ahead of the network: decoding and augmentation on rayon's threads, one
//! bounded queue ahead of the forward (and backward) pass on the caller's thread, so memory
//! stays bounded by the queue depth whatever the number of items.
use anyhow::Result;

/// Calls `consume(i, make(&items[i]))` for every item in order, `make` running on a producer
/// thread up to `depth` items ahead. An error from `consume` stops the producer.
pub fn prefetch<T: Sync, B: Send>(
    items: &[T],
    depth: usize,
    make: impl Fn(&T) -> B + Sync,
    consume: impl FnMut(usize, B) -> Result<()>,
) -> Result<()> {
    prefetch_after(items, depth, make, || Ok(()), consume)
}

/// [`prefetch`], with `setup` run on the caller's thread while the producer makes the first
/// items (the inference engine's build while the first batch decodes). An error from `setup`
/// stops the producer, and nothing is consumed.
pub fn prefetch_after<T: Sync, B: Send>(
    items: &[T],
    depth: usize,
    make: impl Fn(&T) -> B + Sync,
    setup: impl FnOnce() -> Result<()>,
    mut consume: impl FnMut(usize, B) -> Result<()>,
) -> Result<()> {
    let (tx, rx) = crossbeam_channel::bounded::<(usize, B)>(depth.max(1));
    std::thread::scope(|scope| {
        let make = &make;
        scope.spawn(move || {
            for (i, item) in items.iter().enumerate() {
                if tx.send((i, make(item))).is_err() {
                    break; // the consumer stopped (an error): stop preparing
                }
            }
        });
        setup()?;
        for (i, b) in rx {
            consume(i, b)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_item_is_consumed_in_order_and_an_error_stops_the_producer() {
        let items: Vec<u32> = (0..20).collect();
        let mut seen = Vec::new();
        prefetch(
            &items,
            2,
            |x| x * 10,
            |i, b| {
                seen.push((i, b));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, (0..20).map(|i| (i as usize, i * 10)).collect::<Vec<_>>());
        let made = AtomicUsize::new(0);
        let make = |x: &u32| {
            made.fetch_add(1, Ordering::SeqCst);
            *x
        };
        let err = prefetch(&items, 2, make, |i, _| if i == 3 { anyhow::bail!("stop at 3") } else { Ok(()) });
        assert_eq!(err.unwrap_err().to_string(), "stop at 3");
        // Items 0..=3, at most two queued behind them and one in the producer's hands.
        assert!(made.load(Ordering::SeqCst) <= 4 + 2 + 1, "made {}", made.load(Ordering::SeqCst));
    }

    #[test]
    fn setup_runs_while_the_first_items_are_made_and_its_error_stops_everything() {
        let items: Vec<u32> = (0..20).collect();
        // The producer has made the first item while setup runs: setup waits for it.
        let made = AtomicUsize::new(0);
        let make = |x: &u32| {
            made.fetch_add(1, Ordering::SeqCst);
            *x
        };
        let mut seen = Vec::new();
        let setup = || {
            let t = std::time::Instant::now();
            while made.load(Ordering::SeqCst) == 0 {
                assert!(t.elapsed().as_secs() < 10, "nothing was made while setup ran");
                std::thread::yield_now();
            }
            Ok(())
        };
        prefetch_after(&items, 2, make, setup, |i, b| {
            seen.push((i, b));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, (0..20).map(|i| (i as usize, i)).collect::<Vec<_>>());
        let consumed = AtomicUsize::new(0);
        let err = prefetch_after(
            &items,
            2,
            |x| *x,
            || anyhow::bail!("setup failed"),
            |_, _| {
                consumed.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
        );
        assert_eq!(err.unwrap_err().to_string(), "setup failed");
        assert_eq!(consumed.load(Ordering::SeqCst), 0);
    }
}
