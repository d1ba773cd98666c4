//! Maximum likelihood with argmin: L-BFGS over log-parameters, fed by one function that
//! returns the cost and its gradient together.

use std::cell::RefCell;

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;

use crate::AnalyticsError;

/// Cost and gradient at a point, from one pass over the data.
pub(crate) type Evaluation = Result<(f64, Vec<f64>), AnalyticsError>;

/// Adapts one cost-and-gradient function to argmin's two traits. The line search asks for the
/// cost and the gradient at the same points, so the last evaluation is kept.
struct Smooth<F> {
    f: F,
    last: RefCell<Option<Point>>,
}

/// Where the function was last evaluated: (θ, cost, gradient).
type Point = (Vec<f64>, f64, Vec<f64>);

impl<F: Fn(&[f64]) -> Evaluation> Smooth<F> {
    fn at(&self, theta: &[f64]) -> Result<(f64, Vec<f64>), argmin::core::Error> {
        if let Some((at, cost, grad)) = self.last.borrow().as_ref() {
            if at.as_slice() == theta {
                return Ok((*cost, grad.clone()));
            }
        }
        let (cost, grad) = (self.f)(theta).map_err(|e| argmin::core::Error::msg(e.to_string()))?;
        *self.last.borrow_mut() = Some((theta.to_vec(), cost, grad.clone()));
        Ok((cost, grad))
    }
}

impl<F: Fn(&[f64]) -> Evaluation> CostFunction for Smooth<F> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, theta: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        Ok(self.at(theta)?.0)
    }
}

impl<F: Fn(&[f64]) -> Evaluation> Gradient for Smooth<F> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, theta: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        Ok(self.at(theta)?.1)
    }
}

/// Minimises `f` (cost and gradient) with L-BFGS from `start`.
pub(crate) fn minimise(
    f: impl Fn(&[f64]) -> Evaluation,
    start: Vec<f64>,
) -> Result<Vec<f64>, AnalyticsError> {
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 8)
        .with_tolerance_grad(1e-12)
        .and_then(|s| s.with_tolerance_cost(1e-15))
        .map_err(|e| AnalyticsError::Numerical(e.to_string()))?;
    let smooth = Smooth {
        f,
        last: RefCell::new(None),
    };
    let result = Executor::new(smooth, solver)
        .configure(|s| s.param(start).max_iters(1_000))
        .run()
        .map_err(|e| AnalyticsError::Numerical(format!("the fit failed: {e}")))?;
    result
        .state()
        .get_best_param()
        .cloned()
        .ok_or_else(|| AnalyticsError::Numerical("the fit found no parameters".into()))
}

/// Parameters from log-parameters; refused when any is not a finite positive number.
pub(crate) fn positive<const N: usize>(theta: &[f64]) -> Result<[f64; N], AnalyticsError> {
    let mut p = [0.0; N];
    if theta.len() != N {
        return Err(AnalyticsError::Numerical("wrong number of parameters".into()));
    }
    for (slot, t) in p.iter_mut().zip(theta) {
        *slot = t.exp();
        if !slot.is_finite() || *slot <= 0.0 {
            return Err(AnalyticsError::Numerical("parameters out of range".into()));
        }
    }
    Ok(p)
}
