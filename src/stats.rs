//! Small statistics for the verdict: least-squares slope with its confidence interval, Pearson and
//! Spearman correlation. Pure functions over slices.

/// A fitted line y = intercept + slope·x.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fit {
    pub slope: f64,
    pub(crate) intercept: f64,
    /// Standard error of the slope.
    pub(crate) se: f64,
    pub(crate) r2: f64,
    pub(crate) n: usize,
}

impl Fit {
    /// 95% confidence interval of the slope (Student t with n−2 degrees of freedom).
    pub(crate) fn ci95(&self) -> (f64, f64) {
        let t = t95(self.n.saturating_sub(2));
        (self.slope - t * self.se, self.slope + t * self.se)
    }
}

/// Two-sided 95% Student t quantile for `dof` degrees of freedom.
pub(crate) fn t95(dof: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match dof {
        0 => f64::INFINITY,
        d if d <= 30 => T[d - 1],
        d if d <= 60 => 2.000 + (2.042 - 2.000) * (60 - d) as f64 / 30.0,
        _ => 1.96,
    }
}

/// Sums of centred squares and products: (n, mean x, mean y, Sxx, Sxy, Syy).
fn moments(x: &[f64], y: &[f64]) -> (usize, f64, f64, f64, f64, f64) {
    let n = x.len().min(y.len());
    if n == 0 {
        return (0, 0.0, 0.0, 0.0, 0.0, 0.0);
    }
    let mx = x[..n].iter().sum::<f64>() / n as f64;
    let my = y[..n].iter().sum::<f64>() / n as f64;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (dx, dy) = (x[i] - mx, y[i] - my);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    (n, mx, my, sxx, sxy, syy)
}

/// Ordinary least squares. `None` with fewer than three points or no spread in x.
pub(crate) fn ols(x: &[f64], y: &[f64]) -> Option<Fit> {
    let (n, mx, my, sxx, sxy, syy) = moments(x, y);
    if n < 3 || sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let sse = (syy - slope * sxy).max(0.0);
    let se = (sse / (n - 2) as f64 / sxx).sqrt();
    let r2 = if syy > 0.0 { 1.0 - sse / syy } else { 0.0 };
    Some(Fit { slope, intercept, se, r2, n })
}

/// Pearson correlation; 0 when either side has no spread.
pub(crate) fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let (n, _, _, sxx, sxy, syy) = moments(x, y);
    if n < 2 || sxx <= 0.0 || syy <= 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// Ranks with ties averaged.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[idx[k]] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman rank correlation.
pub(crate) fn spearman(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    pearson(&ranks(&x[..n]), &ranks(&y[..n]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_line() {
        let x: Vec<f64> = (0..10).map(f64::from).collect();
        let y: Vec<f64> = x.iter().map(|v| 3.0 + 2.0 * v).collect();
        let f = ols(&x, &y).unwrap();
        assert!((f.slope - 2.0).abs() < 1e-12 && (f.intercept - 3.0).abs() < 1e-9);
        assert!(f.r2 > 0.999999 && f.se < 1e-9);
        assert!((spearman(&x, &y) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn noisy_slope_interval_covers_truth() {
        let x: Vec<f64> = (0..100).map(f64::from).collect();
        let y: Vec<f64> = x.iter().enumerate().map(|(i, v)| 0.5 * v + if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let f = ols(&x, &y).unwrap();
        let (lo, hi) = f.ci95();
        assert!(lo < 0.5 && 0.5 < hi && hi - lo < 0.05, "{lo} {hi}");
    }

    #[test]
    fn degenerate_inputs() {
        assert!(ols(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_none());
        assert!(ols(&[1.0, 2.0], &[1.0, 2.0]).is_none());
        assert_eq!(pearson(&[1.0, 2.0, 3.0], &[5.0, 5.0, 5.0]), 0.0);
        assert!((spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 2.0, 3.0]) - 1.0).abs() < 1e-12);
    }
}
