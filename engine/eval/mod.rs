//! Evaluating scores against benchmark accuracies.

pub mod rank;
pub mod table;

pub use rank::{kendall_tau_b, spearman};
pub use table::Ensemble;
