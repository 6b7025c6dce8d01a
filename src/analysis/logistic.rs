//! Firth-penalised logistic regression on grouped binomial data, and its penalised
//! likelihood-ratio test: how the crash analysis tests one factor adjusted for the others.
//!
//! Each row is a covariate pattern with `n` trials and `k` events. The estimate maximises the
//! log-likelihood plus ½·log det I(β) (Firth 1993, "Bias reduction of maximum likelihood
//! estimates", Biometrika 80), which stays finite when a level never (or always) fails — separation,
//! common in crash logs — by Newton steps on the modified score
//! `U*(β) = Σᵢ xᵢ (kᵢ − nᵢpᵢ + hᵢ(½ − pᵢ))`, hᵢ the diagonal of the weighted hat matrix, with step
//! halving. A term is tested by the penalised likelihood ratio of Heinze & Schemper (2002, "A
//! solution to the problem of separation in logistic regression", Stat. Med. 21): its coefficients
//! fixed at 0, the penalty still from the full model's information (as R's `logistf` does),
//! 2·(ℓ*full − ℓ*restricted) against χ² with as many degrees of freedom as coefficients fixed.

use nalgebra::{DMatrix, DVector};
use statrs::distribution::{ChiSquared, ContinuousCDF};

const MAX_ITERATIONS: usize = 60;
const TOLERANCE: f64 = 1e-7;

/// A fitted model: coefficients and the penalised log-likelihood.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub beta: Vec<f64>,
    pub penalised_loglik: f64,
}

/// Grouped binomial data: one row of covariates (the intercept's 1 included) per pattern.
#[derive(Debug, Clone, Default)]
pub struct Data {
    pub x: Vec<Vec<f64>>,
    pub n: Vec<f64>,
    pub k: Vec<f64>,
}

impl Data {
    fn columns(&self) -> usize {
        self.x.first().map_or(0, Vec::len)
    }
}

/// Fits the model with the coefficients in `fixed` held at 0. `None` when the data are empty or
/// the information matrix cannot be inverted even with a tiny ridge.
pub fn fit(data: &Data, fixed: &[usize]) -> Option<Fit> {
    let (rows, p) = (data.x.len(), data.columns());
    if rows == 0 || p == 0 {
        return None;
    }
    let x = DMatrix::from_fn(rows, p, |i, j| data.x[i][j]);
    let free: Vec<usize> = (0..p).filter(|j| !fixed.contains(j)).collect();
    // Start from the overall failure odds (the intercept's column), everything else at 0.
    let mut beta = DVector::zeros(p);
    let (k_all, n_all) = (data.k.iter().sum::<f64>(), data.n.iter().sum::<f64>());
    if !fixed.contains(&0) && n_all > 0.0 {
        beta[0] = ((k_all + 0.5) / (n_all - k_all + 0.5)).ln();
    }
    let mut current = penalised(&x, data, &beta)?;
    for _ in 0..MAX_ITERATIONS {
        let (info, probs) = information(&x, data, &beta);
        let inverse = invert(&info)?;
        // Hat diagonal hᵢ = wᵢ · xᵢᵀ I⁻¹ xᵢ, all rows at once: rowsums of (X I⁻¹) ∘ X.
        let xi = &x * &inverse;
        let mut score = DVector::zeros(p);
        for (i, prob) in probs.iter().enumerate() {
            let w = data.n[i] * prob * (1.0 - prob);
            let h = w * xi.row(i).dot(&x.row(i));
            let residual = data.k[i] - data.n[i] * prob + h * (0.5 - prob);
            score.axpy(residual, &x.row(i).transpose(), 1.0);
        }
        let sub_info = DMatrix::from_fn(free.len(), free.len(), |a, b| info[(free[a], free[b])]);
        let sub_score = DVector::from_iterator(free.len(), free.iter().map(|&j| score[j]));
        let step_free = invert(&sub_info)? * sub_score;
        let mut step = DVector::zeros(p);
        for (a, &j) in free.iter().enumerate() {
            step[j] = step_free[a].clamp(-5.0, 5.0);
        }
        let mut scale = 1.0;
        let mut accepted = None;
        for _ in 0..30 {
            let candidate = &beta + &step * scale;
            if let Some(value) = penalised(&x, data, &candidate)
                && value >= current - 1e-12
            {
                accepted = Some((candidate, value));
                break;
            }
            scale /= 2.0;
        }
        let Some((next, value)) = accepted else { break };
        let moved = (&next - &beta).amax();
        (beta, current) = (next, value);
        if moved < TOLERANCE {
            break;
        }
    }
    Some(Fit { beta: beta.iter().copied().collect(), penalised_loglik: current })
}

/// The penalised likelihood-ratio test of the coefficients `term` (their χ² statistic and p-value),
/// given `full`, the fit with nothing fixed.
pub fn lr_test(data: &Data, full: &Fit, term: &[usize]) -> Option<(f64, f64)> {
    if term.is_empty() {
        return None;
    }
    let restricted = fit(data, term)?;
    let statistic = (2.0 * (full.penalised_loglik - restricted.penalised_loglik)).max(0.0);
    let chi = ChiSquared::new(term.len() as f64).ok()?;
    Some((statistic, chi.sf(statistic).clamp(0.0, 1.0)))
}

fn probability(eta: f64) -> f64 {
    (1.0 / (1.0 + (-eta).exp())).clamp(1e-15, 1.0 - 1e-15)
}

/// Fisher information XᵀWX and the fitted probabilities.
fn information(x: &DMatrix<f64>, data: &Data, beta: &DVector<f64>) -> (DMatrix<f64>, Vec<f64>) {
    let eta = x * beta;
    let probs: Vec<f64> = eta.iter().map(|e| probability(*e)).collect();
    let mut weighted = x.clone();
    for (i, mut row) in weighted.row_iter_mut().enumerate() {
        row *= data.n[i] * probs[i] * (1.0 - probs[i]);
    }
    (x.transpose() * weighted, probs)
}

/// ℓ(β) + ½·log det I(β); `None` when I is not positive definite.
fn penalised(x: &DMatrix<f64>, data: &Data, beta: &DVector<f64>) -> Option<f64> {
    let (info, probs) = information(x, data, beta);
    let loglik: f64 =
        (0..x.nrows()).map(|i| data.k[i] * probs[i].ln() + (data.n[i] - data.k[i]) * (1.0 - probs[i]).ln()).sum();
    let det = info.clone().cholesky().map(|c| c.l().diagonal().iter().map(|d| d.ln()).sum::<f64>() * 2.0);
    let logdet =
        det.or_else(|| ridged(&info).cholesky().map(|c| c.l().diagonal().iter().map(|d| d.ln()).sum::<f64>() * 2.0))?;
    let value = loglik + 0.5 * logdet;
    value.is_finite().then_some(value)
}

fn ridged(m: &DMatrix<f64>) -> DMatrix<f64> {
    let scale = m.diagonal().amax().max(1e-12);
    m + DMatrix::identity(m.nrows(), m.ncols()) * (scale * 1e-9)
}

fn invert(m: &DMatrix<f64>) -> Option<DMatrix<f64>> {
    m.clone().cholesky().or_else(|| ridged(m).cholesky()).map(|c| c.inverse())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows: intercept, and one 0/1 covariate.
    fn two_groups(a: (f64, f64), b: (f64, f64)) -> Data {
        Data { x: vec![vec![1.0, 0.0], vec![1.0, 1.0]], n: vec![a.0, b.0], k: vec![a.1, b.1] }
    }

    #[test]
    fn a_two_by_two_table_gives_the_half_corrected_log_odds() {
        // For a 2×2 table, Firth's estimates are the log odds with ½ added to every cell (Firth
        // 1993): x = 0: 20 trials, 4 events; x = 1: 20 trials, 12 events.
        let data = two_groups((20.0, 4.0), (20.0, 12.0));
        let full = fit(&data, &[]).unwrap();
        let odds = |k: f64, n: f64| ((k + 0.5) / (n - k + 0.5)).ln();
        assert!((full.beta[0] - odds(4.0, 20.0)).abs() < 1e-6, "{full:?}");
        assert!((full.beta[1] - (odds(12.0, 20.0) - odds(4.0, 20.0))).abs() < 1e-6, "{full:?}");
        let (stat, p) = lr_test(&data, &full, &[1]).unwrap();
        assert!(stat > 4.0 && p < 0.05 && p > 0.001, "{stat} {p}");
    }

    #[test]
    fn separation_stays_finite() {
        // Every request at the second level failed, none at the first.
        let data = two_groups((50.0, 0.0), (10.0, 10.0));
        let full = fit(&data, &[]).unwrap();
        assert!(full.beta.iter().all(|b| b.is_finite()) && full.beta[1] > 3.0, "{full:?}");
        let (_, p) = lr_test(&data, &full, &[1]).unwrap();
        assert!(p < 1e-6, "{p}");
    }

    #[test]
    fn no_effect_gives_a_large_p() {
        let data = two_groups((200.0, 10.0), (200.0, 11.0));
        let full = fit(&data, &[]).unwrap();
        let (_, p) = lr_test(&data, &full, &[1]).unwrap();
        assert!(p > 0.5, "{p}");
        assert!(fit(&Data::default(), &[]).is_none());
        assert!(lr_test(&data, &full, &[]).is_none());
    }

    #[test]
    fn a_confounder_is_adjusted_for() {
        // Failures depend on b only; a goes with b nine times in ten. Columns: 1, a, b.
        let mut data = Data::default();
        for (a, b, n, k) in
            [(0.0, 0.0, 90.0, 2.0), (0.0, 1.0, 10.0, 5.0), (1.0, 0.0, 10.0, 0.0), (1.0, 1.0, 90.0, 45.0)]
        {
            data.x.push(vec![1.0, a, b]);
            data.n.push(n);
            data.k.push(k);
        }
        let full = fit(&data, &[]).unwrap();
        let (_, p_a) = lr_test(&data, &full, &[1]).unwrap();
        let (_, p_b) = lr_test(&data, &full, &[2]).unwrap();
        assert!(p_b < 1e-6 && p_a > 0.05, "a {p_a} b {p_b}");
    }
}
