//! Which samples a rank takes: PyTorch's `DistributedSampler` (`torch/utils/data/distributed.py`,
//! `drop_last=False`) over zoo's per-epoch permutation.
//!
//! Every rank computes the same permutation of the whole training set from `(seed, epoch)`,
//! pads it by repeating its start to a multiple of the world size, and takes positions
//! `rank, rank + W, rank + 2W, ...`. With batch size `B` per rank, step `k` of the job then
//! covers positions `k·W·B .. (k+1)·W·B` of the permutation: exactly the batch of one process
//! with batch size `W·B`, which is why `W×B` trains like `1×W·B`.

/// Rank `rank`'s share of `order` (the epoch's permutation of all samples) in a world of
/// `world` ranks: `ceil(len / world)` samples, the permutation padded as DistributedSampler does.
pub fn shard<T: Clone>(order: &[T], rank: usize, world: usize) -> Vec<T> {
    assert!(world >= 1 && rank < world, "rank {rank} of {world}");
    if order.is_empty() {
        return Vec::new();
    }
    let per_rank = order.len().div_ceil(world);
    (0..per_rank).map(|i| order[(rank + i * world) % order.len()].clone()).collect()
}

/// Rank `rank`'s part of an evaluation: positions `rank, rank + W, ...`, no padding, so the
/// counts summed over the ranks are exact.
pub fn split<T: Clone>(items: &[T], rank: usize, world: usize) -> Vec<T> {
    items.iter().skip(rank).step_by(world.max(1)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DistributedSampler's padding, written as torch/utils/data/distributed.py writes it.
    fn reference(indices: &[usize], rank: usize, world: usize) -> Vec<usize> {
        let num_samples = indices.len().div_ceil(world);
        let total_size = num_samples * world;
        let mut v = indices.to_vec();
        let padding = total_size - v.len();
        if padding <= v.len() {
            v.extend_from_slice(&indices[..padding]);
        } else {
            let reps = padding.div_ceil(indices.len());
            let rep: Vec<usize> = indices.iter().cycle().take(indices.len() * reps).copied().collect();
            v.extend_from_slice(&rep[..padding]);
        }
        v.iter().skip(rank).step_by(world).copied().take(num_samples).collect()
    }

    #[test]
    fn shards_pad_like_distributed_sampler() {
        for n in 1..12 {
            let order: Vec<usize> = (0..n).map(|i| (i * 7 + 3) % n).collect();
            for world in 1..9 {
                let mut all = Vec::new();
                for rank in 0..world {
                    let s = shard(&order, rank, world);
                    assert_eq!(s, reference(&order, rank, world), "n {n} world {world} rank {rank}");
                    all.extend(s);
                }
                assert_eq!(all.len(), n.div_ceil(world) * world);
            }
        }
    }

    #[test]
    fn step_k_of_w_ranks_is_step_k_of_one_process_with_w_times_the_batch() {
        let order: Vec<usize> = (0..24).rev().collect();
        let (w, b) = (3, 2);
        let shards: Vec<Vec<usize>> = (0..w).map(|r| shard(&order, r, w)).collect();
        for (k, big) in order.chunks(w * b).enumerate() {
            let mut union: Vec<usize> = shards.iter().flat_map(|s| s[k * b..(k + 1) * b].to_vec()).collect();
            let mut want = big.to_vec();
            union.sort();
            want.sort();
            assert_eq!(union, want);
        }
    }

    #[test]
    fn evaluation_splits_cover_each_item_once() {
        let items: Vec<usize> = (0..10).collect();
        let mut all: Vec<usize> = (0..3).flat_map(|r| split(&items, r, 3)).collect();
        all.sort();
        assert_eq!(all, items);
    }
}
