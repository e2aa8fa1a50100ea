//! Networks: an arch plus a macro config becomes a plan (a flat list of layers over
//! buffer slots), with deterministic, backend-independent initialisation.

pub mod geom;
pub mod init;
pub mod plan;

pub use plan::{
    Feature, FeatureKind, Layer, ModuleOutput, ParamId, ParamKind, ParamSpec, Plan, PlanError,
    SlotId, SlotShape,
};

/// Batch-norm epsilon of every BN layer (the framework default).
pub const BN_EPS: f64 = 1e-5;
