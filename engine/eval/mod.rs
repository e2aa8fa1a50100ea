//! Evaluating scores against benchmark accuracies.

pub mod rank;

pub use rank::{kendall_tau_b, spearman};
