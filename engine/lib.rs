//! nasrank: training-free scores for NAS-Bench-201 architectures on a hand-written engine.
//!
//! Layers, bottom up (see docs/ARCHITECTURE.md):
//! - [`space`]: the search spaces, NAS-Bench-201 / NATS-Bench topology (ops, archs, index
//!   order, isomorphism, counts) and NATS-Bench size (widths), behind one `Space`;
//! - [`net`]: an arch plus a macro config becomes a [`net::Plan`], with deterministic weights;
//! - [`backend`]: primitives (convolution, batch norm, ...) and the executor that runs a plan;
//! - [`data`]: CIFAR readers, normalisation, minibatches, synthetic inputs.

pub mod backend;
pub mod data;
pub mod eval;
pub mod net;
pub mod proxy;
pub mod run;
pub mod search;
pub mod space;
pub mod store;
