//! Regression trees on quantile-binned features (the histogram method of LightGBM and
//! scikit-learn's HistGradientBoosting): each feature is cut into at most 255 bins once,
//! and a node's best split is found from per-bin sums in one pass over its rows.
//! The random forest is here; gradient boosting, grown leaf-wise, is in [`crate::boost`].

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// One node: a split (`feature >= 0`: go left when `x[feature] <= value`) or a leaf
/// (`feature < 0`, predicting `value`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    #[serde(rename = "f")]
    pub feature: i32,
    #[serde(rename = "v")]
    pub value: f64,
    #[serde(rename = "l")]
    pub left: u32,
    #[serde(rename = "r")]
    pub right: u32,
    /// Squared-error reduction of the split (feature importances).
    #[serde(rename = "g")]
    pub gain: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    pub fn predict(&self, x: &[f64]) -> f64 {
        let mut i = 0usize;
        loop {
            let Some(n) = self.nodes.get(i) else {
                return f64::NAN;
            };
            if n.feature < 0 {
                return n.value;
            }
            let v = x.get(n.feature as usize).copied().unwrap_or(f64::NAN);
            i = if v <= n.value { n.left } else { n.right } as usize;
        }
    }

    pub fn add_importances(&self, imp: &mut [f64]) {
        for n in self.nodes.iter().filter(|n| n.feature >= 0) {
            if let Some(v) = imp.get_mut(n.feature as usize) {
                *v += n.gain;
            }
        }
    }
}

/// Features cut into quantile bins: `codes[f][row]` is the bin of row's feature `f`;
/// bin `b` holds values in `(edges[f][b-1], edges[f][b]]`.
#[derive(Debug, Clone)]
pub struct Binned {
    codes: Vec<Vec<u8>>,
    edges: Vec<Vec<f64>>,
    rows: usize,
}

impl Binned {
    /// Bins the rows of `x` (row-major) into at most `max_bins` (<= 256) per feature.
    pub fn new(x: &[Vec<f64>], max_bins: usize) -> Self {
        let rows = x.len();
        let features = x.first().map_or(0, Vec::len);
        let max_bins = max_bins.clamp(2, 256);
        let mut codes = Vec::with_capacity(features);
        let mut edges = Vec::with_capacity(features);
        // Quantiles from at most 200k values: enough for 255 bins.
        let step = (rows / 200_000).max(1);
        for f in 0..features {
            let mut sample: Vec<f64> = x
                .iter()
                .step_by(step)
                .map(|r| r[f])
                .filter(|v| v.is_finite())
                .collect();
            sample.sort_by(f64::total_cmp);
            let mut e: Vec<f64> = (1..max_bins)
                .filter_map(|q| sample.get(q * sample.len() / max_bins).copied())
                .collect();
            e.dedup();
            let c = x
                .iter()
                .map(|r| e.partition_point(|edge| *edge < r[f]) as u8)
                .collect();
            codes.push(c);
            edges.push(e);
        }
        Self { codes, edges, rows }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn features(&self) -> usize {
        self.codes.len()
    }

    /// Bins of feature `f` (edges + 1).
    pub fn bins(&self, f: usize) -> usize {
        self.edges[f].len() + 1
    }

    /// The upper edge of bin `b` of feature `f`: a split "bin <= b" is "value <= edge".
    pub fn edge(&self, f: usize, b: usize) -> f64 {
        self.edges[f][b]
    }

    /// The codes row by row (`rows * features`, one row's adjacent): the layout for
    /// building histograms of scattered rows.
    pub fn row_major(&self) -> Vec<u8> {
        let nf = self.features();
        let mut out = vec![0u8; self.rows * nf];
        for (f, codes) in self.codes.iter().enumerate() {
            for (r, &c) in codes.iter().enumerate() {
                out[r * nf + f] = c;
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TreeParams {
    pub max_depth: usize,
    pub min_leaf: usize,
    /// Features tried per split (all when >= the number of features).
    pub max_features: usize,
}

/// Grows one tree on `rows` (indices into `binned`, repeats allowed) towards `target`.
pub fn fit_tree(
    binned: &Binned,
    mut rows: Vec<u32>,
    target: &[f64],
    p: TreeParams,
    rng: &mut ChaCha8Rng,
) -> Tree {
    let mut nodes = vec![leaf(0.0)];
    // (node index, start, end, depth) of nodes still to grow, rows[start..end] theirs.
    let mut todo = vec![(0usize, 0usize, rows.len(), 0usize)];
    let nf = binned.features();
    let mut order: Vec<usize> = (0..nf).collect();
    while let Some((at, start, end, depth)) = todo.pop() {
        let here = &mut rows[start..end];
        let n = here.len();
        let sum: f64 = here.iter().map(|&r| target[r as usize]).sum();
        nodes[at].value = if n > 0 { sum / n as f64 } else { 0.0 };
        if depth >= p.max_depth || n < 2 * p.min_leaf {
            continue;
        }
        // A random subset of features, the same draw sequence for a given seed.
        let k = p.max_features.clamp(1, nf);
        for i in 0..k {
            let j = rng.random_range(i..nf);
            order.swap(i, j);
        }
        let mut best: Option<(f64, usize, usize)> = None; // (gain, feature, bin)
        let mut sums = [0.0f64; 256];
        let mut counts = [0u32; 256];
        for &f in &order[..k] {
            let bins = binned.edges[f].len() + 1;
            sums[..bins].fill(0.0);
            counts[..bins].fill(0);
            let codes = &binned.codes[f];
            for &r in here.iter() {
                let b = codes[r as usize] as usize;
                sums[b] += target[r as usize];
                counts[b] += 1;
            }
            let parent = sum * sum / n as f64;
            let (mut sl, mut nl) = (0.0, 0usize);
            for b in 0..bins - 1 {
                sl += sums[b];
                nl += counts[b] as usize;
                let nr = n - nl;
                if nl < p.min_leaf {
                    continue;
                }
                if nr < p.min_leaf {
                    break;
                }
                let sr = sum - sl;
                let gain = sl * sl / nl as f64 + sr * sr / nr as f64 - parent;
                if best.is_none_or(|(g, _, _)| gain > g) {
                    best = Some((gain, f, b));
                }
            }
        }
        let Some((gain, f, b)) = best.filter(|(g, _, _)| *g > 1e-9) else {
            continue;
        };
        // Partition in place: rows of bins <= b first.
        let codes = &binned.codes[f];
        let mut split = 0;
        for i in 0..n {
            if (codes[here[i] as usize] as usize) <= b {
                here.swap(i, split);
                split += 1;
            }
        }
        let (l, r) = (nodes.len(), nodes.len() + 1);
        nodes.push(leaf(0.0));
        nodes.push(leaf(0.0));
        nodes[at] = Node {
            feature: f as i32,
            value: binned.edges[f][b],
            left: l as u32,
            right: r as u32,
            gain,
        };
        todo.push((l, start, start + split, depth + 1));
        todo.push((r, start + split, end, depth + 1));
    }
    Tree { nodes }
}

pub(crate) fn leaf(value: f64) -> Node {
    Node {
        feature: -1,
        value,
        left: 0,
        right: 0,
        gain: 0.0,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ForestParams {
    pub trees: usize,
    pub tree: TreeParams,
    pub seed: u64,
    pub threads: usize,
}

/// A random forest: bootstrap samples, random feature subsets per split, trees grown in
/// parallel; tree `i` uses seed `seed + i`, so the result does not depend on `threads`.
pub fn fit_forest(
    binned: &Binned,
    target: &[f64],
    p: ForestParams,
    progress: &(dyn Fn() + Sync),
) -> Vec<Tree> {
    let n = binned.rows();
    let grow = |i: usize| {
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed.wrapping_add(i as u64));
        let rows: Vec<u32> = (0..n).map(|_| rng.random_range(0..n) as u32).collect();
        let t = fit_tree(binned, rows, target, p.tree, &mut rng);
        progress();
        t
    };
    let threads = p.threads.max(1);
    let mut out: Vec<(usize, Tree)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                let grow = &grow;
                s.spawn(move || {
                    (w..p.trees)
                        .step_by(threads)
                        .map(|i| (i, grow(i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// y = 10 if x0 > 0.5 else 0, plus x1 (a second, linear signal); x2 is noise.
    fn data(n: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x: Vec<Vec<f64>> = (0..n)
            .map(|_| vec![rng.random(), rng.random(), rng.random()])
            .collect();
        let y = x
            .iter()
            .map(|r| if r[0] > 0.5 { 10.0 } else { 0.0 } + r[1])
            .collect();
        (x, y)
    }

    #[test]
    fn a_tree_finds_the_step_and_its_threshold_is_a_real_cut() {
        let (x, y) = data(2000);
        let b = Binned::new(&x, 64);
        let p = TreeParams {
            max_depth: 1,
            min_leaf: 5,
            max_features: 3,
        };
        let t = fit_tree(
            &b,
            (0..2000).collect(),
            &y,
            p,
            &mut ChaCha8Rng::seed_from_u64(0),
        );
        assert_eq!(t.nodes[0].feature, 0);
        assert!(
            (t.nodes[0].value - 0.5).abs() < 0.03,
            "{}",
            t.nodes[0].value
        );
        assert!((t.predict(&[0.9, 0.5, 0.0]) - 10.5).abs() < 0.2);
        // Training rows go where their bin went: the split is consistent on raw values.
        let left = x.iter().filter(|r| r[0] <= t.nodes[0].value).count();
        let code_left = b.codes[0]
            .iter()
            .filter(|&&c| {
                usize::from(c)
                    <= b.edges[0]
                        .iter()
                        .position(|e| *e == t.nodes[0].value)
                        .unwrap()
            })
            .count();
        assert_eq!(left, code_left);
    }

    #[test]
    fn a_forest_learns_and_is_deterministic() {
        let (x, y) = data(3000);
        let (xt, yt) = (&x[2000..], &y[2000..]);
        let b = Binned::new(&x[..2000], 255);
        let tree = TreeParams {
            max_depth: 6,
            min_leaf: 5,
            max_features: 2,
        };
        let fp = ForestParams {
            trees: 20,
            tree,
            seed: 3,
            threads: 2,
        };
        let forest = fit_forest(&b, &y[..2000], fp, &|| {});
        let again = fit_forest(&b, &y[..2000], ForestParams { threads: 1, ..fp }, &|| {});
        assert_eq!(
            forest, again,
            "same seed, same forest, whatever the threads"
        );
        let rmse = |f: &dyn Fn(&[f64]) -> f64| {
            (xt.iter()
                .zip(yt)
                .map(|(r, t)| (f(r) - t).powi(2))
                .sum::<f64>()
                / yt.len() as f64)
                .sqrt()
        };
        let forest_rmse = rmse(&|r| forest.iter().map(|t| t.predict(r)).sum::<f64>() / 20.0);
        assert!(forest_rmse < 0.6, "forest RMSE {forest_rmse}");
        let mut imp = vec![0.0; 3];
        forest.iter().for_each(|t| t.add_importances(&mut imp));
        assert!(imp[0] > imp[1] && imp[1] > imp[2], "{imp:?}");
    }
}
