//! The Gauss hypergeometric function ₂F₁, which the BG/NBD conditional expectation needs.
//!
//! Written here because no maintained Rust crate offers it for real arguments (statrs has the
//! gamma family only). We need it on 0 ≤ z < 1 only: z = t / (α + T + t).

use crate::AnalyticsError;

/// Longest series we are willing to sum before giving up.
const MAX_TERMS: usize = 1_000_000;

/// ₂F₁(a, b; c; z) for |z| < 1 by its power series, summed until a term no longer changes
/// the sum. For z close to 1 with large parameters the series converges slowly; past
/// [`MAX_TERMS`] (or if anything becomes non-finite) it reports an error instead of a guess.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> Result<f64, AnalyticsError> {
    if !(a.is_finite() && b.is_finite() && c.is_finite() && z.is_finite()) {
        return Err(AnalyticsError::Numerical(
            "hyp2f1 got a non-finite argument".into(),
        ));
    }
    if z.abs() >= 1.0 {
        return Err(AnalyticsError::Numerical(format!(
            "hyp2f1 needs |z| < 1, got {z}"
        )));
    }
    if c <= 0.0 && c.fract() == 0.0 {
        return Err(AnalyticsError::Numerical(format!(
            "hyp2f1 is undefined for c = {c}"
        )));
    }
    if z < 0.0 {
        // Pfaff's transformation turns the alternating series (which cancels catastrophically
        // for large parameters) into one with a positive argument in (0, ½).
        return Ok((1.0 - z).powf(-a) * hyp2f1(a, c - b, c, z / (z - 1.0))?);
    }
    let mut term = 1.0f64;
    let mut sum = 1.0f64;
    for k in 0..MAX_TERMS {
        let k = k as f64;
        term *= (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
        if term == 0.0 {
            return Ok(sum);
        }
        let next = sum + term;
        if !next.is_finite() {
            break;
        }
        // The ratio of successive terms, ρ = (a+k+1)(b+k+1)/((c+k+1)(k+2))·z, tends to z; once
        // |ρ| < 1 the rest of the series is about |term|·ρ/(1−ρ). Stop when that cannot move
        // the sum.
        let rho = ((a + k + 1.0) * (b + k + 1.0) / ((c + k + 1.0) * (k + 2.0)) * z).abs();
        let rho = rho.max(z.abs());
        if rho < 1.0 && term.abs() * rho / (1.0 - rho) <= f64::EPSILON * next.abs() {
            return Ok(next);
        }
        sum = next;
    }
    Err(AnalyticsError::Numerical(format!(
        "hyp2f1({a}, {b}; {c}; {z}) did not converge"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(x: f64, y: f64, tol: f64) -> bool {
        (x - y).abs() <= tol * (1.0 + y.abs())
    }

    /// Values from SciPy's `scipy.special.hyp2f1` (Cephes), an independent implementation; the
    /// first is the BG/NBD expectation of the CDNOW customer in Fader, Hardie & Lee (2005).
    #[test]
    fn agrees_with_scipy() {
        let cases = [
            (2.243, 4.426, 4.219, 0.4740258161752194, 4.575315897643688),
            (0.5, 1.5, 2.5, 0.9, 1.6673034691845778),
            (10.3, 12.1, 15.7, 0.95, 2896245751.199079),
            (3.2, 0.7, 1.9, -0.8, 0.5276039226098451),
            (25.0, 30.0, 40.0, 0.5, 296295.513428705),
            (0.1, 0.2, 0.3, 0.99, 1.3127119893438641),
            (7.5, 2.25, 3.5, 0.75, 2172.323863854579),
            (40.24, 42.43, 42.22, 0.3, 1838605.5224152303),
        ];
        for (a, b, c, z, want) in cases {
            let got = hyp2f1(a, b, c, z).unwrap();
            assert!(
                close(got, want, 1e-11),
                "2F1({a}, {b}; {c}; {z}) = {got}, SciPy {want}"
            );
        }
    }

    #[test]
    fn known_closed_forms() {
        // ₂F₁(1, 1; 2; z) = −ln(1 − z) / z
        for z in [0.001, 0.3, 0.9, 0.99, -0.5] {
            let want = -(1.0f64 - z).ln() / z;
            assert!(close(hyp2f1(1.0, 1.0, 2.0, z).unwrap(), want, 1e-12), "z={z}");
        }
        // ₂F₁(½, ½; 3/2; z²) = arcsin(z) / z
        for z in [0.1f64, 0.5, 0.9] {
            let want = z.asin() / z;
            assert!(close(hyp2f1(0.5, 0.5, 1.5, z * z).unwrap(), want, 1e-12), "z={z}");
        }
        assert_eq!(hyp2f1(2.0, 3.0, 4.0, 0.0).unwrap(), 1.0);
        assert!(hyp2f1(1.0, 1.0, 2.0, 1.0).is_err());
        assert!(hyp2f1(1.0, 1.0, -2.0, 0.5).is_err());
        assert!(hyp2f1(f64::NAN, 1.0, 2.0, 0.5).is_err());
    }

    proptest! {
        /// ₂F₁(a, b; b; z) = (1 − z)^(−a).
        #[test]
        fn reduces_to_a_power(a in 0.01f64..20.0, b in 0.01f64..20.0, z in -0.9f64..0.9) {
            let want = (1.0 - z).powf(-a);
            prop_assert!(close(hyp2f1(a, b, b, z).unwrap(), want, 1e-10));
        }

        /// Euler's transformation: ₂F₁(a, b; c; z) = (1 − z)^(c−a−b) ₂F₁(c−a, c−b; c; z).
        #[test]
        fn euler_transformation_holds(a in 0.05f64..10.0, b in 0.05f64..10.0, c in 0.5f64..15.0,
                                      z in 0.0f64..0.8) {
            let left = hyp2f1(a, b, c, z).unwrap();
            let right = (1.0 - z).powf(c - a - b) * hyp2f1(c - a, c - b, c, z).unwrap();
            prop_assert!(close(left, right, 1e-9), "{left} vs {right}");
        }
    }
}
