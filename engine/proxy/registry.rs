//! The score registry: each score declares every fact about it once, in its own file, as
//! a [`ScoreDef`]; the `registry!` list in engine/proxy/mod.rs names them all.
//!
//! Adding a score: write its file in engine/proxy with a unit struct implementing
//! [`ScoreDef`] (its [`ScoreInfo`]: name, direction, class key, dead value, minibatch, what
//! it runs; and `compute`, which asks the [`ArchScoring`] for the arch's shared executor,
//! a pass shared with other scores through [`ArchScoring::shared`], or builds what it
//! needs), then add one line `Variant => file::Struct` to the registry. Nothing else names
//! a particular score: the scorer, the results files, the CLI and the docs' list of names
//! all read the registry.

use super::scorer::ScoreSettings;
use super::Score;
use crate::backend::{Backend, Executor};
use crate::data::{Batch, Seeds};
use crate::net::Plan;
use crate::space::{AnyArch, Cell, ClassKey, Space};
use std::any::{Any, TypeId};
use std::collections::HashMap;

/// Everything about a score but its computation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreInfo {
    /// The name `--scores` takes and the column of results files.
    pub name: &'static str,
    /// Whether a higher value predicts a better arch.
    pub higher_is_better: bool,
    /// The key under which archs have equal values of this score (nb201.md, "What the
    /// isomorphism key does NOT preserve").
    pub class_key: ClassKey,
    /// The exact value on every dead arch ([`crate::space::is_dead`]), where that is one
    /// constant (the derivation sits beside each declaration); `None` where it depends on
    /// the arch, the seed or the data and must be computed.
    pub dead_value: Option<f64>,
    /// Which of the settings' minibatches the score takes.
    pub minibatch: Minibatch,
    /// What the score runs.
    pub runs: Runs,
    /// The most images the score can take, where it has a limit.
    pub max_images: Option<usize>,
    /// The search spaces the score is defined on.
    pub spaces: &'static [Space],
}

/// Every search space.
pub const EVERY_SPACE: &[Space] = &Space::ALL;

/// The topology space alone: scores of the cell by itself (TE-NAS's linear regions).
pub const TOPOLOGY_ONLY: &[Space] = &[Space::Tss];

/// Which minibatch of [`ScoreSettings`] a score takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Minibatch {
    /// `naswot_batch` (NASWOT's 128).
    Naswot,
    /// `ntk_batch` (TE-NAS's 32).
    Ntk,
    /// `batch` (the zero-cost paper's 64).
    Gradient,
    /// `swap_batch` (SWAP's 16).
    Swap,
    /// `meco_batch` (MeCo's 1).
    Meco,
    /// No images of the dataset (counts, synflow's all-ones image).
    None,
}

/// What a score runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runs {
    /// Passes of the arch's network with its initial weights on the backend, through the
    /// executor shared by every such score of the arch.
    SharedNetwork,
    /// Networks of its own on the backend.
    OwnNetworks,
    /// Nothing on the backend: counted from the cell, or computed on the host in f64.
    Host,
}

/// A score: its facts and how to compute it.
pub trait ScoreDef {
    const INFO: ScoreInfo;
    /// The score of the arch that `arch` holds.
    fn compute<B: Backend>(arch: &mut ArchScoring<'_, B>) -> anyhow::Result<f64>;
}

/// One arch being scored: what a score may read, the executor shared by the scores that
/// run the arch's network (built on first use), and passes shared between scores.
pub struct ArchScoring<'a, B: Backend> {
    pub backend: &'a B,
    pub arch: AnyArch,
    /// The cell of the arch's network (the size space's fixed cell for its archs).
    pub cell: Cell,
    pub plan: &'a Plan,
    pub data: &'a Batch,
    pub settings: &'a ScoreSettings,
    /// Every score asked of this arch, in order (a shared pass may compute more when a
    /// later score needs it, as fisher's activations for snip and grad_norm).
    pub asked: &'a [Score],
    exec: Option<Executor<'a, B>>,
    shared: HashMap<TypeId, Box<dyn Any>>,
    kept: &'a mut WorkerCache,
}

/// What one worker keeps from one arch to the next, for the archs of one seed and one
/// minibatch: state a score reuses on a later arch (one value per type).
#[derive(Default)]
pub struct WorkerCache {
    /// Whether archs scored one after another share their first blocks (the size space in
    /// index order: a run of archs differ only in their last widths), so that a score may
    /// keep the outputs of those blocks and resume there (NASWOT does). In the topology
    /// space every cell repeats the arch's cell: archs share no more than the stem, and
    /// keeping anything would only cost copies.
    pub shares_blocks: bool,
    values: HashMap<TypeId, Box<dyn Any + Send>>,
}

impl WorkerCache {
    /// A cache for archs of `space` scored in the order given.
    pub fn for_space(space: Space) -> WorkerCache {
        WorkerCache {
            shares_blocks: space == Space::Sss,
            values: HashMap::new(),
        }
    }

    /// The state of type `T` a score keeps here, if any (to inspect what was kept).
    pub fn kept<T: Any>(&self) -> Option<&T> {
        self.values.get(&TypeId::of::<T>())?.downcast_ref::<T>()
    }
}

impl<'a, B: Backend> ArchScoring<'a, B> {
    pub fn new(
        backend: &'a B,
        arch: AnyArch,
        plan: &'a Plan,
        data: &'a Batch,
        settings: &'a ScoreSettings,
        asked: &'a [Score],
        kept: &'a mut WorkerCache,
    ) -> Self {
        ArchScoring {
            backend,
            arch,
            cell: plan.cell,
            plan,
            data,
            settings,
            asked,
            exec: None,
            shared: HashMap::new(),
            kept,
        }
    }

    /// Whether the worker's earlier archs share blocks with this one
    /// ([`WorkerCache::shares_blocks`]).
    pub fn shares_blocks(&self) -> bool {
        self.kept.shares_blocks
    }

    /// Runs `f` with the state of type `T` the worker keeps from arch to arch (a default
    /// one the first time).
    pub fn with_kept<T: Any + Send + Default, R>(
        &mut self,
        f: impl FnOnce(&mut Self, &mut T) -> R,
    ) -> R {
        let mut value: Box<T> = self
            .kept
            .values
            .remove(&TypeId::of::<T>())
            .map(|v| v.downcast::<T>().expect("keyed by its type"))
            .unwrap_or_default();
        let result = f(self, &mut value);
        self.kept.values.insert(TypeId::of::<T>(), value);
        result
    }

    /// The executor holding the arch's initial weights (of `settings.seed`), shared by
    /// every score of the arch that runs its network.
    pub fn exec(&mut self) -> &mut Executor<'a, B> {
        let (backend, plan, seed) = (self.backend, self.plan, Seeds(self.settings.seed).weights());
        self.exec
            .get_or_insert_with(|| Executor::with_init(backend, plan, seed))
    }

    /// The result of a pass several scores read (one value per type `T`), computed by
    /// `compute` the first time a score asks for it.
    pub fn shared<T: Any + Clone>(&mut self, compute: impl FnOnce(&mut Self) -> T) -> T {
        if let Some(value) = self.shared.get(&TypeId::of::<T>()) {
            return value
                .downcast_ref::<T>()
                .expect("keyed by its type")
                .clone();
        }
        let value = compute(self);
        self.shared
            .insert(TypeId::of::<T>(), Box::new(value.clone()));
        value
    }
}

/// Builds [`Score`] from the list of score definitions: the enum, `Score::ALL`,
/// `Score::info` and the dispatch of `Score::compute`.
macro_rules! registry {
    ($($variant:ident => $def:path,)*) => {
        /// Every score the engine computes (engine/proxy/registry.rs).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Score {
            $($variant,)*
        }

        impl Score {
            pub const ALL: [Score; [$(Score::$variant,)*].len()] = [$(Score::$variant,)*];

            /// The score's declared facts.
            pub fn info(self) -> &'static ScoreInfo {
                match self {
                    $(Score::$variant => &<$def as ScoreDef>::INFO,)*
                }
            }

            /// The score of the arch that `arch` holds.
            pub fn compute<B: Backend>(
                self,
                arch: &mut ArchScoring<'_, B>,
            ) -> anyhow::Result<f64> {
                match self {
                    $(Score::$variant => <$def as ScoreDef>::compute(arch),)*
                }
            }
        }
    };
}
pub(crate) use registry;
