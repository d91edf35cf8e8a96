//! A model laid out for prediction: every tree of an ensemble in one array of 16-byte nodes,
//! each split's two children next to each other, so a prediction walks one contiguous block
//! instead of a `Vec` per tree of 32-byte nodes that carry their training gain.
//!
//! [`Predictor::predict`] gives exactly [`Model::predict`]'s value (the same comparisons,
//! the same summation order); the tests check it bit for bit.

use crate::{Model, Tree};

/// A split (`feature != LEAF`: go to `left` when `x[feature] <= value`, else `left + 1`) or
/// a leaf (`value` is the prediction).
#[derive(Debug, Clone, Copy, PartialEq)]
struct FlatNode {
    value: f64,
    feature: u32,
    left: u32,
}

const LEAF: u32 = u32::MAX;

/// The trees of an ensemble, flattened.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Flat {
    nodes: Vec<FlatNode>,
    roots: Vec<u32>,
}

impl Flat {
    fn new(trees: &[Tree]) -> Self {
        let mut flat = Flat::default();
        for t in trees {
            flat.push(t);
        }
        flat
    }

    /// Appends a tree breadth first: its node `i` goes to `at`, its children to a new pair.
    fn push(&mut self, tree: &Tree) {
        let root = self.nodes.len() as u32;
        self.roots.push(root);
        self.nodes.push(LEAF_NODE);
        let mut todo = std::collections::VecDeque::from([(0usize, root)]);
        let mut visited = 0;
        while let Some((i, at)) = todo.pop_front() {
            visited += 1;
            // A child index outside the tree predicts NaN, as `Tree::predict` does; so does
            // a malformed artifact whose links visit more nodes than it has (a cycle).
            let Some(n) = tree.nodes.get(i).filter(|_| visited <= tree.nodes.len()) else {
                self.nodes[at as usize].value = f64::NAN;
                continue;
            };
            if n.feature < 0 {
                self.nodes[at as usize].value = n.value;
                continue;
            }
            let left = self.nodes.len() as u32;
            self.nodes[at as usize] = FlatNode {
                value: n.value,
                feature: n.feature as u32,
                left,
            };
            self.nodes.extend([LEAF_NODE, LEAF_NODE]);
            todo.push_back((n.left as usize, left));
            todo.push_back((n.right as usize, left + 1));
        }
    }

    /// The sum of the trees' predictions, in tree order. The trees are walked `LANES` at a
    /// time, interleaved: each step is a load that depends on the one before, and walking
    /// several trees at once lets those loads overlap.
    fn sum(&self, x: &[f64]) -> f64 {
        self.roots
            .chunks(LANES)
            .flat_map(|roots| self.walk(roots, x))
            .sum::<f64>()
    }

    /// The leaf values of the trees at `roots` (at most `LANES`).
    fn walk(&self, roots: &[u32], x: &[f64]) -> impl Iterator<Item = f64> {
        let mut at = [LEAF_NODE; LANES];
        for (a, &r) in at.iter_mut().zip(roots) {
            *a = self.nodes[r as usize];
        }
        loop {
            let mut moved = false;
            for n in at.iter_mut() {
                if n.feature != LEAF {
                    let v = x.get(n.feature as usize).copied().unwrap_or(f64::NAN);
                    // Right when `v > value` or `v` is NaN, as in `Tree::predict`; one
                    // comparison, no branch.
                    #[allow(clippy::neg_cmp_op_on_partial_ord)]
                    let right = u32::from(!(v <= n.value));
                    *n = self.nodes[(n.left + right) as usize];
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        at.into_iter().take(roots.len()).map(|n| n.value)
    }
}

/// Trees walked at once by [`Flat::sum`].
const LANES: usize = 16;

const LEAF_NODE: FlatNode = FlatNode {
    value: 0.0,
    feature: LEAF,
    left: 0,
};

/// A [`Model`] ready to predict: tree ensembles flattened, the rest as they are.
#[derive(Debug, Clone, PartialEq)]
pub enum Predictor {
    /// The mean of the trees.
    Forest(Flat),
    /// `base + learning_rate * sum(trees)`.
    Boosted {
        base: f64,
        learning_rate: f64,
        trees: Flat,
    },
    /// `x[from] + inner(x)`.
    Delta { from: usize, inner: Box<Predictor> },
    /// `sum(weight * part(x))`, in order.
    Blend(Vec<(f64, Predictor)>),
    /// Models without trees.
    Plain(Model),
}

impl Predictor {
    pub fn new(model: &Model) -> Self {
        match model {
            Model::Forest { trees } => Predictor::Forest(Flat::new(trees)),
            Model::Boosted {
                base,
                learning_rate,
                trees,
            } => Predictor::Boosted {
                base: *base,
                learning_rate: *learning_rate,
                trees: Flat::new(trees),
            },
            Model::Delta { from, inner } => Predictor::Delta {
                from: *from,
                inner: Box::new(Predictor::new(inner)),
            },
            Model::Blend { parts } => {
                Predictor::Blend(parts.iter().map(|(w, m)| (*w, Predictor::new(m))).collect())
            }
            other => Predictor::Plain(other.clone()),
        }
    }

    pub fn predict(&self, x: &[f64]) -> f64 {
        match self {
            Predictor::Forest(f) => f.sum(x) / f.roots.len().max(1) as f64,
            Predictor::Boosted {
                base,
                learning_rate,
                trees,
            } => base + learning_rate * trees.sum(x),
            Predictor::Delta { from, inner } => {
                x.get(*from).copied().unwrap_or(f64::NAN) + inner.predict(x)
            }
            Predictor::Blend(parts) => parts.iter().map(|(w, p)| w * p.predict(x)).sum(),
            Predictor::Plain(m) => m.predict(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::boost::{BoostParams, fit_boosted};
    use crate::tree::{Binned, ForestParams, Node, TreeParams, fit_forest};

    /// Rows of 5 features, 2 % of them NaN after the target was computed, and a target that
    /// needs deep trees.
    fn data(n: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut x: Vec<Vec<f64>> = (0..n)
            .map(|_| (0..5).map(|_| rng.random::<f64>() * 100.0).collect())
            .collect();
        let y = x
            .iter()
            .map(|r| (r[0] * 0.3).sin() * 20.0 + r[1].max(r[2]) * 0.5 + f64::from(r[3] > 50.0))
            .collect();
        for v in x.iter_mut().flatten() {
            if rng.random::<f64>() < 0.02 {
                *v = f64::NAN;
            }
        }
        (x, y)
    }

    fn params() -> TreeParams {
        TreeParams {
            max_depth: 8,
            min_leaf: 3,
            max_features: 3,
        }
    }

    fn same(model: &Model, x: &[Vec<f64>]) {
        let p = Predictor::new(model);
        for row in x {
            assert_eq!(
                p.predict(row).to_bits(),
                model.predict(row).to_bits(),
                "{row:?}"
            );
        }
        // A short row: the missing features are NaN in both.
        assert_eq!(p.predict(&[1.0]).to_bits(), model.predict(&[1.0]).to_bits());
    }

    #[test]
    fn a_flattened_forest_predicts_what_the_forest_predicts() {
        let (x, y) = data(3000);
        let binned = Binned::new(&x, 64);
        let trees = fit_forest(
            &binned,
            &y,
            ForestParams {
                trees: 12,
                tree: params(),
                seed: 1,
                threads: 2,
            },
            &|| {},
        );
        let sizes: Vec<usize> = trees.iter().map(|t| t.nodes.len()).collect();
        assert!(sizes.iter().all(|n| *n > 20), "{sizes:?}");
        same(&Model::Forest { trees }, &x);
    }

    #[test]
    fn a_flattened_boosted_delta_model_predicts_what_the_model_predicts() {
        let (x, y) = data(3000);
        let binned = Binned::new(&x, 64);
        let p = BoostParams {
            rounds: 20,
            learning_rate: 0.1,
            max_leaves: 63,
            max_depth: 8,
            min_leaf: 3,
            lambda: 1.0,
            subsample: 0.8,
            feature_fraction: 0.8,
            patience: 0,
            seed: 2,
            threads: 2,
        };
        let fit = fit_boosted(&x, &binned, &y, p, None, &|| {});
        let (base, trees) = (fit.base, fit.trees);
        let model = Model::Delta {
            from: 0,
            inner: Box::new(Model::Boosted {
                base,
                learning_rate: 0.1,
                trees,
            }),
        };
        same(&model, &x);
        assert!(matches!(Predictor::new(&model), Predictor::Delta { .. }));
        // Blended with a ridge model fitted on the same rows, still bit for bit.
        let clean: Vec<Vec<f64>> = x
            .iter()
            .map(|r| {
                r.iter()
                    .map(|v| if v.is_nan() { 0.0 } else { *v })
                    .collect()
            })
            .collect();
        let linear = crate::linear::fit_ridge(&clean, &y).unwrap();
        let blended = crate::linear::blend(model, linear, 0.3);
        same(&blended, &clean);
        assert!(matches!(Predictor::new(&blended), Predictor::Blend(_)));
    }

    #[test]
    fn a_child_outside_the_tree_predicts_nan_as_the_tree_does() {
        let split = Node {
            feature: 0,
            value: 1.0,
            left: 1,
            right: 9,
            gain: 0.0,
        };
        let leaf = Node {
            feature: -1,
            value: 4.0,
            left: 0,
            right: 0,
            gain: 0.0,
        };
        let model = Model::Forest {
            trees: vec![Tree {
                nodes: vec![split, leaf],
            }],
        };
        let p = Predictor::new(&model);
        assert_eq!(p.predict(&[0.5]), 4.0);
        assert!(p.predict(&[2.0]).is_nan());
        assert!(model.predict(&[2.0]).is_nan());
    }
}
