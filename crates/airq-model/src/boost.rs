//! Gradient boosting on squared error, grown leaf-wise as LightGBM grows its trees: each
//! round's tree splits the leaf with the largest gain next, up to `max_leaves`; a node's
//! histogram is built from its rows only for the smaller child, the larger child's is the
//! parent's minus it. Leaves are shrunk by an L2 penalty (`lambda`), each tree sees a sample
//! of the rows (`subsample`) and of the features (`feature_fraction`), and an optional
//! validation set stops the rounds once it has not improved for `patience` rounds.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::tree::{Binned, Node, Tree, leaf};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoostParams {
    /// Most rounds (trees); fewer when the validation set stops them.
    pub rounds: usize,
    pub learning_rate: f64,
    pub max_leaves: usize,
    /// Depth limit on top of `max_leaves` (0: none).
    pub max_depth: usize,
    /// Fewest training rows in a leaf.
    pub min_leaf: usize,
    /// L2 penalty on leaf values: a leaf predicts `sum / (rows + lambda)`.
    pub lambda: f64,
    /// Fraction of rows each round's tree sees.
    pub subsample: f64,
    /// Fraction of features each round's tree may split on.
    pub feature_fraction: f64,
    /// Rounds without a better validation RMSE before stopping.
    pub patience: usize,
    pub seed: u64,
    /// Threads building the histograms of large nodes.
    pub threads: usize,
}

/// Rows to predict after each round, and their truth: the window early stopping watches.
#[derive(Debug, Clone, Copy)]
pub struct Validation<'a> {
    pub x: &'a [Vec<f64>],
    pub target: &'a [f64],
}

#[derive(Debug, Clone, PartialEq)]
pub struct Boosted {
    pub base: f64,
    pub trees: Vec<Tree>,
    /// Validation RMSE after each round (empty without a validation set).
    pub curve: Vec<f64>,
}

impl Boosted {
    /// The round with the lowest validation RMSE (1-based), if there was a validation set.
    pub fn best_rounds(&self) -> Option<usize> {
        let (i, _) = self
            .curve
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))?;
        Some(i + 1)
    }
}

/// Fits `target` from `binned`'s rows (`x` the same rows, raw, to update predictions out of
/// the sample). With a validation set the trees after its best round are dropped.
pub fn fit_boosted(
    x: &[Vec<f64>],
    binned: &Binned,
    target: &[f64],
    p: BoostParams,
    validation: Option<Validation<'_>>,
    progress: &(dyn Fn() + Sync),
) -> Boosted {
    let n = target.len();
    let nf = binned.features();
    let base = target.iter().sum::<f64>() / n.max(1) as f64;
    let mut pred = vec![base; n];
    let mut val_pred = validation.map(|v| vec![base; v.target.len()]);
    let mut residual = vec![0.0; n];
    let codes = binned.row_major();
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let mut grower = Grower::new(binned, &codes, p);
    let mut in_bag = vec![false; n];
    let (mut trees, mut curve) = (Vec::with_capacity(p.rounds), Vec::new());
    let (mut best, mut since_best) = (f64::INFINITY, 0usize);
    let k = ((nf as f64 * p.feature_fraction).round() as usize).clamp(1, nf.max(1));
    let mut order: Vec<usize> = (0..nf).collect();
    for _ in 0..p.rounds {
        for i in 0..n {
            residual[i] = target[i] - pred[i];
        }
        let rows: Vec<u32> = (0..n as u32)
            .filter(|_| rng.random::<f64>() < p.subsample)
            .collect();
        for i in 0..k {
            let j = rng.random_range(i..nf);
            order.swap(i, j);
        }
        let mut allowed = vec![false; nf];
        order[..k].iter().for_each(|&f| allowed[f] = true);
        let (tree, leaves) = grower.grow(rows, &residual, &allowed);
        in_bag.fill(false);
        for (value, rows) in &leaves {
            for &r in rows {
                pred[r as usize] += p.learning_rate * value;
                in_bag[r as usize] = true;
            }
        }
        for (i, row) in x.iter().enumerate() {
            if !in_bag[i] {
                pred[i] += p.learning_rate * tree.predict(row);
            }
        }
        if let (Some(v), Some(vp)) = (validation, val_pred.as_mut()) {
            let mut se = 0.0;
            for ((row, y), at) in v.x.iter().zip(v.target).zip(vp.iter_mut()) {
                *at += p.learning_rate * tree.predict(row);
                se += (y - *at).powi(2);
            }
            let rmse = (se / v.target.len().max(1) as f64).sqrt();
            curve.push(rmse);
            if rmse < best {
                (best, since_best) = (rmse, 0);
            } else {
                since_best += 1;
            }
        }
        trees.push(tree);
        progress();
        if since_best >= p.patience.max(1) {
            break;
        }
    }
    let mut b = Boosted { base, trees, curve };
    if let Some(r) = b.best_rounds() {
        b.trees.truncate(r);
    }
    b
}

/// Per-bin sums of one node: residual sum and row count, `BINS` slots per feature.
#[derive(Debug, Clone, Copy, Default)]
struct Bin {
    g: f64,
    n: f64,
}

const BINS: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Split {
    gain: f64,
    feature: usize,
    bin: usize,
}

/// A leaf still open: its node, its rows `rows[start..end]`, their residual sum, its
/// histogram and the best split it allows.
struct Open {
    node: usize,
    start: usize,
    end: usize,
    depth: usize,
    sum: f64,
    hist: Vec<Bin>,
    best: Option<Split>,
}

struct Grower<'a> {
    binned: &'a Binned,
    codes: &'a [u8],
    p: BoostParams,
    /// Spare histograms, reused across nodes and rounds.
    pool: Vec<Vec<Bin>>,
    /// The rows going right while a node is partitioned.
    right: Vec<u32>,
}

impl<'a> Grower<'a> {
    fn new(binned: &'a Binned, codes: &'a [u8], p: BoostParams) -> Self {
        Self {
            binned,
            codes,
            p,
            pool: Vec::new(),
            right: Vec::new(),
        }
    }

    fn nf(&self) -> usize {
        self.binned.features()
    }

    /// One tree on `rows` towards `g`, splitting only on `allowed` features; returns it and,
    /// per leaf, its value and its rows.
    fn grow(
        &mut self,
        mut rows: Vec<u32>,
        g: &[f64],
        allowed: &[bool],
    ) -> (Tree, Vec<(f64, Vec<u32>)>) {
        let sum: f64 = rows.iter().map(|&r| g[r as usize]).sum();
        let mut hist = self.take();
        self.build(&rows, g, &mut hist);
        let mut nodes = vec![leaf(0.0)];
        let mut open = vec![Open {
            node: 0,
            start: 0,
            end: rows.len(),
            depth: 0,
            sum,
            best: None,
            hist,
        }];
        open[0].best = self.best_split(&open[0], allowed);
        let mut closed: Vec<Open> = Vec::new();
        while open.len() + closed.len() < self.p.max_leaves.max(1) {
            let Some(i) = (0..open.len())
                .filter(|&i| open[i].best.is_some())
                .max_by(|&a, &b| gain(&open[a]).total_cmp(&gain(&open[b])))
            else {
                break;
            };
            let parent = open.swap_remove(i);
            let Some(s) = parent.best else { break };
            // A stable partition: a node's rows stay in ascending order, so the passes over
            // them read the codes and residuals front to back.
            let here = &mut rows[parent.start..parent.end];
            let nf = self.nf();
            let mut mid = 0;
            self.right.clear();
            for j in 0..here.len() {
                let r = here[j];
                if usize::from(self.codes[r as usize * nf + s.feature]) <= s.bin {
                    here[mid] = r;
                    mid += 1;
                } else {
                    self.right.push(r);
                }
            }
            here[mid..].copy_from_slice(&self.right);
            let (l, r) = (nodes.len(), nodes.len() + 1);
            nodes.push(leaf(0.0));
            nodes.push(leaf(0.0));
            nodes[parent.node] = Node {
                feature: s.feature as i32,
                value: self.binned.edge(s.feature, s.bin),
                left: l as u32,
                right: r as u32,
                gain: s.gain,
            };
            let split = parent.start + mid;
            let left_small = mid <= here.len() - mid;
            let (small, large) = if left_small {
                ((l, parent.start, split), (r, split, parent.end))
            } else {
                ((r, split, parent.end), (l, parent.start, split))
            };
            let mut small_hist = self.take();
            self.build(&rows[small.1..small.2], g, &mut small_hist);
            let mut large_hist = parent.hist;
            for (a, b) in large_hist.iter_mut().zip(&small_hist) {
                a.g -= b.g;
                a.n -= b.n;
            }
            let small_sum: f64 = rows[small.1..small.2].iter().map(|&r| g[r as usize]).sum();
            for (node, start, end, sum, hist) in [
                (small.0, small.1, small.2, small_sum, small_hist),
                (
                    large.0,
                    large.1,
                    large.2,
                    parent.sum - small_sum,
                    large_hist,
                ),
            ] {
                let mut o = Open {
                    node,
                    start,
                    end,
                    depth: parent.depth + 1,
                    sum,
                    hist,
                    best: None,
                };
                o.best = self.best_split(&o, allowed);
                if o.best.is_some() {
                    open.push(o);
                } else {
                    closed.push(o);
                }
            }
        }
        let mut leaves = Vec::with_capacity(open.len() + closed.len());
        for o in open.into_iter().chain(closed) {
            let n = (o.end - o.start) as f64;
            let value = o.sum / (n + self.p.lambda);
            nodes[o.node].value = value;
            leaves.push((value, rows[o.start..o.end].to_vec()));
            self.pool.push(o.hist);
        }
        (Tree { nodes }, leaves)
    }

    fn take(&mut self) -> Vec<Bin> {
        let mut h = self
            .pool
            .pop()
            .unwrap_or_else(|| vec![Bin::default(); self.nf() * BINS]);
        h.fill(Bin::default());
        h
    }

    /// The histogram of `rows`: of each half separately when they are many, the second half
    /// on another thread if there is one (the same sums either way: the result does not
    /// depend on `threads`).
    fn build(&self, rows: &[u32], g: &[f64], hist: &mut [Bin]) {
        const HALVES_FROM: usize = 4096;
        let nf = self.nf();
        if rows.len() < HALVES_FROM {
            accumulate(self.codes, nf, rows, g, hist);
            return;
        }
        let (a, b) = rows.split_at(rows.len() / 2);
        let mut other = vec![Bin::default(); hist.len()];
        if self.p.threads < 2 {
            accumulate(self.codes, nf, b, g, &mut other);
            accumulate(self.codes, nf, a, g, hist);
        } else {
            std::thread::scope(|s| {
                s.spawn(|| accumulate(self.codes, nf, b, g, &mut other));
                accumulate(self.codes, nf, a, g, hist);
            });
        }
        for (h, o) in hist.iter_mut().zip(&other) {
            h.g += o.g;
            h.n += o.n;
        }
    }

    fn best_split(&self, o: &Open, allowed: &[bool]) -> Option<Split> {
        let p = &self.p;
        let n = (o.end - o.start) as f64;
        if (p.max_depth > 0 && o.depth >= p.max_depth) || n < 2.0 * p.min_leaf as f64 {
            return None;
        }
        let min = p.min_leaf.max(1) as f64;
        let parent = o.sum * o.sum / (n + p.lambda);
        let mut best: Option<Split> = None;
        for f in (0..self.nf()).filter(|&f| allowed[f]) {
            let bins = self.binned.bins(f);
            let h = &o.hist[f * BINS..f * BINS + bins];
            let (mut gl, mut nl) = (0.0, 0.0);
            for (b, bin) in h.iter().enumerate().take(bins - 1) {
                gl += bin.g;
                nl += bin.n;
                let nr = n - nl;
                if nl < min {
                    continue;
                }
                if nr < min {
                    break;
                }
                let gr = o.sum - gl;
                let gain = gl * gl / (nl + p.lambda) + gr * gr / (nr + p.lambda) - parent;
                if gain > 1e-9 && best.is_none_or(|s| gain > s.gain) {
                    best = Some(Split {
                        gain,
                        feature: f,
                        bin: b,
                    });
                }
            }
        }
        best
    }
}

fn gain(o: &Open) -> f64 {
    o.best.map_or(f64::NEG_INFINITY, |s| s.gain)
}

/// Adds each row's residual to the bins of its features: one row's codes are adjacent.
fn accumulate(codes: &[u8], nf: usize, rows: &[u32], g: &[f64], hist: &mut [Bin]) {
    for &r in rows {
        let r = r as usize;
        let gr = g[r];
        let row = &codes[r * nf..r * nf + nf];
        for (f, &c) in row.iter().enumerate() {
            let b = &mut hist[f * BINS + usize::from(c)];
            b.g += gr;
            b.n += 1.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// y = 10 if x0 > 0.5 else 0, plus 3 * x1; x2 is noise.
    fn data(n: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x: Vec<Vec<f64>> = (0..n)
            .map(|_| vec![rng.random(), rng.random(), rng.random()])
            .collect();
        let y = x
            .iter()
            .map(|r| if r[0] > 0.5 { 10.0 } else { 0.0 } + 3.0 * r[1])
            .collect();
        (x, y)
    }

    fn params() -> BoostParams {
        BoostParams {
            rounds: 200,
            learning_rate: 0.2,
            max_leaves: 8,
            max_depth: 0,
            min_leaf: 5,
            lambda: 1.0,
            subsample: 0.8,
            feature_fraction: 1.0,
            patience: 10,
            seed: 3,
            threads: 2,
        }
    }

    fn rmse(b: &Boosted, p: &BoostParams, x: &[Vec<f64>], y: &[f64]) -> f64 {
        let se: f64 = x
            .iter()
            .zip(y)
            .map(|(r, t)| {
                let v =
                    b.base + p.learning_rate * b.trees.iter().map(|t| t.predict(r)).sum::<f64>();
                (v - t).powi(2)
            })
            .sum();
        (se / y.len() as f64).sqrt()
    }

    #[test]
    fn boosting_learns_stops_early_and_does_not_depend_on_threads() {
        let (x, y) = data(40_000, 1);
        let (vx, vy) = data(2000, 2);
        let b = Binned::new(&x, 255);
        let p = params();
        let v = Validation {
            x: &vx,
            target: &vy,
        };
        let fit = fit_boosted(&x, &b, &y, p, Some(v), &|| {});
        let again = fit_boosted(&x, &b, &y, BoostParams { threads: 1, ..p }, Some(v), &|| {});
        assert!(fit == again, "same seed, same model, whatever the threads");
        assert!(
            fit.curve.len() < p.rounds,
            "stopped early: {}",
            fit.curve.len()
        );
        assert_eq!(Some(fit.trees.len()), fit.best_rounds());
        assert!(fit.trees.iter().all(|t| t.nodes.len() < 2 * p.max_leaves));
        let (tx, ty) = data(2000, 3);
        let e = rmse(&fit, &p, &tx, &ty);
        assert!(e < 0.3, "test RMSE {e}");
        let mut imp = vec![0.0; 3];
        fit.trees.iter().for_each(|t| t.add_importances(&mut imp));
        assert!(imp[0] > imp[1] && imp[1] > imp[2], "{imp:?}");
    }

    #[test]
    fn leaf_wise_growth_respects_leaves_depth_and_leaf_size() {
        let (x, y) = data(5000, 4);
        let b = Binned::new(&x, 255);
        let p = BoostParams {
            rounds: 3,
            max_leaves: 31,
            max_depth: 3,
            min_leaf: 100,
            ..params()
        };
        let fit = fit_boosted(&x, &b, &y, p, None, &|| {});
        assert_eq!(fit.trees.len(), 3);
        assert!(fit.curve.is_empty());
        for t in &fit.trees {
            let leaves = t.nodes.iter().filter(|n| n.feature < 0).count();
            assert!(leaves <= 8, "depth 3 allows 8 leaves, got {leaves}");
            assert!(leaves > 1);
        }
        // Every leaf of a tree holds at least min_leaf of the sampled rows: walk the rows.
        let t = &fit.trees[0];
        let mut counts = vec![0usize; t.nodes.len()];
        for r in &x {
            let mut i = 0;
            while t.nodes[i].feature >= 0 {
                let n = &t.nodes[i];
                i = if r[n.feature as usize] <= n.value {
                    n.left
                } else {
                    n.right
                } as usize;
            }
            counts[i] += 1;
        }
        let smallest = (0..t.nodes.len())
            .filter(|&i| t.nodes[i].feature < 0)
            .map(|i| counts[i])
            .min()
            .unwrap();
        assert!(
            smallest >= 100 * 7 / 10,
            "smallest leaf {smallest} of all rows (80 % sampled)"
        );
    }
}
