//! Networks: an arch plus a macro config becomes a plan (a flat list of layers over
//! buffer slots), with deterministic, backend-independent initialisation.
