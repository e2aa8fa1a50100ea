//! A network as a plan: a flat list of layers over buffer slots, built from a cell genotype
//! and a macro config.
//!
//! Slots hold one activation tensor each (per image `c x h x w`, batch-major at run time);
//! every layer writes a fresh slot, so a forward pass keeps everything a backward pass needs.
//! Values that can only be zero (a node fed only by `none` edges, or by edges whose input is
//! itself zero) get no slot and no layers; the ReLU modules that would have seen them are
//! recorded as [`ConstantCode`]s, because NASWOT still counts their (all-zero) codes.

use super::geom::ConvGeom;
use crate::space::{AnyArch, Cell, MacroConfig, Op, EDGES, NODES, SSS_CELL};
use std::fmt;

/// Index of a buffer slot in [`Plan::slots`].
pub type SlotId = usize;
/// Index of a parameter tensor in [`Plan::params`].
pub type ParamId = usize;

/// Per-image shape of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlotShape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl SlotShape {
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn hw(&self) -> usize {
        self.h * self.w
    }
}

/// What a parameter tensor is; decides its initial distribution and which scores see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamKind {
    ConvWeight,
    BnGamma,
    BnBeta,
    LinearWeight,
    LinearBias,
}

impl ParamKind {
    /// "Weights" in the TE-NAS sense: every parameter named `weight` in the reference
    /// model (conv and linear weights, BN gamma), not biases or BN beta.
    pub fn is_weight(self) -> bool {
        matches!(
            self,
            ParamKind::ConvWeight | ParamKind::BnGamma | ParamKind::LinearWeight
        )
    }
}

/// One parameter tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// Stable, PyTorch-like name (`cells.3.edge13.nor_conv_3x3.conv.weight`); it also keys
    /// the initialisation, so the same position gets the same weights in every arch.
    pub name: String,
    pub kind: ParamKind,
    pub shape: Vec<usize>,
    /// Fan-in of the layer owning it (`cin*k*k`, linear `in`), for the default init bound.
    pub fan_in: usize,
}

impl ParamSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One step of the plan. Every layer writes its own output slot `y`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layer {
    /// Convolution without bias.
    Conv {
        x: SlotId,
        y: SlotId,
        w: ParamId,
        geom: ConvGeom,
    },
    /// Affine batch norm (statistics from the batch, or per image; chosen at run time).
    BatchNorm {
        x: SlotId,
        y: SlotId,
        gamma: ParamId,
        beta: ParamId,
    },
    /// ReLU standing for `modules` ReLU modules of the reference network that all see the
    /// same input (every conv edge leaving a node has its own ReLU of that node).
    Relu { x: SlotId, y: SlotId, modules: u32 },
    /// 3x3 average pool, stride 1, pad 1, padding not counted in the divisor.
    AvgPool3x3 { x: SlotId, y: SlotId },
    /// 2x2 average pool, stride 2.
    AvgPool2x2 { x: SlotId, y: SlotId },
    /// Mean over the spatial positions: `c x h x w` -> `c x 1 x 1`.
    GlobalAvgPool { x: SlotId, y: SlotId },
    /// `y = x W^T + b` over the flattened input.
    Linear {
        x: SlotId,
        y: SlotId,
        w: ParamId,
        b: ParamId,
    },
    /// Elementwise sum of two or more slots of one shape.
    Sum { xs: Vec<SlotId>, y: SlotId },
    /// A slot of zeros (only where a zero value must feed a layer that has parameters).
    Zero { y: SlotId },
}

impl Layer {
    /// The slot this layer writes.
    pub fn output(&self) -> SlotId {
        match self {
            Layer::Conv { y, .. }
            | Layer::BatchNorm { y, .. }
            | Layer::Relu { y, .. }
            | Layer::AvgPool3x3 { y, .. }
            | Layer::AvgPool2x2 { y, .. }
            | Layer::GlobalAvgPool { y, .. }
            | Layer::Linear { y, .. }
            | Layer::Sum { y, .. }
            | Layer::Zero { y } => *y,
        }
    }

    /// The parameters this layer reads.
    pub fn params(&self) -> Vec<ParamId> {
        match self {
            Layer::Conv { w, .. } => vec![*w],
            Layer::BatchNorm { gamma, beta, .. } => vec![*gamma, *beta],
            Layer::Linear { w, b, .. } => vec![*w, *b],
            _ => Vec::new(),
        }
    }

    /// The slots this layer reads.
    pub fn inputs(&self) -> Vec<SlotId> {
        match self {
            Layer::Conv { x, .. }
            | Layer::BatchNorm { x, .. }
            | Layer::Relu { x, .. }
            | Layer::AvgPool3x3 { x, .. }
            | Layer::AvgPool2x2 { x, .. }
            | Layer::GlobalAvgPool { x, .. }
            | Layer::Linear { x, .. } => vec![*x],
            Layer::Sum { xs, .. } => xs.clone(),
            Layer::Zero { .. } => Vec::new(),
        }
    }
}

/// ReLU modules of the reference network whose input is identically zero: their codes
/// are all zero bits, known without computing them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConstantCode {
    /// Units per image of one module.
    pub units: usize,
    pub modules: u32,
}

/// A network ready to execute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub config: MacroConfig,
    pub cell: Cell,
    /// Per-image shape of every slot; slot 0 is the input.
    pub slots: Vec<SlotShape>,
    pub layers: Vec<Layer>,
    pub params: Vec<ParamSpec>,
    pub constant_codes: Vec<ConstantCode>,
    /// The logits slot.
    pub output: SlotId,
    /// The network's cell-boundary feature maps, in order: the stem's output (the input
    /// without a stem), then each cell's and reduction block's output (18 at N = 5, the
    /// features AZ-NAS reads). Empty for the single-cell plans.
    pub features: Vec<Feature>,
    /// Every tensor a module of the reference network outputs in one forward pass (the
    /// hooks MeCo's released code sets on every module fire on these). Empty for the
    /// single-cell plans.
    pub module_outputs: Vec<ModuleOutput>,
}

/// A tensor that `modules` modules of the reference network output in a forward pass.
///
/// The reference is the network MeCo's released code builds (see [`ModuleTree`]): the
/// zero-cost-NAS `NAS201Model` for the topology space, xautodl's `DynamicShapeTinyNet`
/// for the size space. Their modules nest: a conv edge's conv output is also the output
/// of its BN (in train mode on one image a per-channel affine map of it), of the edge's
/// `Sequential` and of its `ReLUConvBN`. Here each tensor appears once per distinct slot
/// the plan has for it: the conv's slot once, the BN's slot three times. The list is in
/// the order the hooks fire (a module's after those of the modules it calls).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleOutput {
    /// Its slot; `None` where it is identically zero.
    pub slot: Option<SlotId>,
    pub shape: SlotShape,
    pub modules: u32,
}

/// Which module tree of MeCo's released code a plan's [`ModuleOutput`]s follow. The two
/// share the cells' edge modules (`ReLUConvBN` = `op` Sequential of ReLU, Conv, BN; an
/// `Identity` skip), the reduction block (conv_a, conv_b, then `downsample`/`residual` =
/// Sequential(AvgPool2x2, Conv1x1), then the block), `lastact` = Sequential(BN,
/// ReLU(inplace)) whose BN hook sees the BN output before the ReLU overwrites it, the
/// classifier and the model itself; they differ in the wrappers around them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ModuleTree {
    /// The zero-cost-NAS `NAS201Model` (topology space): the stem is a module around a
    /// Sequential(Conv, BN) (its BN output counted three times), each stage a called
    /// Sequential of its cells (its last cell's output counted again), and `top` a module
    /// around lastact and the pool (the pooled map counted twice).
    ZeroCostNas201,
    /// xautodl's `DynamicShapeTinyNet` (size space, MeCo's copy under
    /// correlation/models/shape_infers): the stem is a bare Sequential(Conv, BN) (its BN
    /// output counted twice), the cells and blocks sit in a ModuleList that is indexed,
    /// never called (no extra firing), and the pool is called by the model itself (once).
    ShapeTinyNet,
}

impl ModuleTree {
    /// Modules outputting the stem's BN output: the BN, the stem Sequential and, in
    /// `NAS201Model`, the stem module around it.
    fn stem_bn_modules(self) -> u32 {
        match self {
            ModuleTree::ZeroCostNas201 => 3,
            ModuleTree::ShapeTinyNet => 2,
        }
    }

    /// Modules outputting the pooled map: the pool and, in `NAS201Model`, `top`.
    fn pool_modules(self) -> u32 {
        match self {
            ModuleTree::ZeroCostNas201 => 2,
            ModuleTree::ShapeTinyNet => 1,
        }
    }
}

/// One cell-boundary feature map of a [`Plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feature {
    pub kind: FeatureKind,
    /// Its slot; `None` where it is identically zero (no slot holds it).
    pub slot: Option<SlotId>,
    pub shape: SlotShape,
}

/// What produces a [`Feature`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureKind {
    Stem,
    Cell,
    Reduction,
}

/// The input slot of every plan.
pub const INPUT: SlotId = 0;

/// One step of a network's layout after the stem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    /// A cell whose nodes after the input have `width` channels.
    Cell { width: usize },
    /// A ResNet reduction block to `width` channels at half the resolution.
    Reduction { width: usize },
    /// The end of a stage of the zero-cost-NAS model, whose stage `Sequential` outputs its
    /// last cell's output again (a module output, nothing computed).
    StageEnd,
}

/// A macro config the plan builder cannot build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error(
        "input size {0} cannot be halved twice (the two reduction blocks need a multiple of 4)"
    )]
    InputSize(usize),
    #[error("without a stem the input must have as many channels as the first stage ({channels}), not {input_channels}")]
    StemlessChannels {
        channels: usize,
        input_channels: usize,
    },
}

impl Plan {
    /// Whether the plan builder can build a network of `config`.
    fn check(config: &MacroConfig) -> Result<(), PlanError> {
        for (value, name) in [
            (config.channels, "channels"),
            (config.classes, "classes"),
            (config.input_size, "input size"),
            (config.input_channels, "input channels"),
        ] {
            if value == 0 {
                return Err(PlanError::Zero(name));
            }
        }
        if !config.input_size.is_multiple_of(4) {
            return Err(PlanError::InputSize(config.input_size));
        }
        if !config.stem && config.input_channels != config.channels {
            return Err(PlanError::StemlessChannels {
                channels: config.channels,
                input_channels: config.input_channels,
            });
        }
        Ok(())
    }

    /// Builds the NAS-Bench-201 TinyNetwork for `cell` under `config`.
    pub fn build(cell: &Cell, config: &MacroConfig) -> Result<Plan, PlanError> {
        Plan::check(config)?;
        let mut blocks = Vec::new();
        for stage in 0..3 {
            let width = config.channels << stage;
            if stage > 0 {
                blocks.push(Block::Reduction { width });
            }
            blocks.extend((0..config.cells_per_stage).map(|_| Block::Cell { width }));
            // The zero-cost-NAS model's stage Sequential outputs its last cell's output
            // again.
            if config.cells_per_stage > 0 {
                blocks.push(Block::StageEnd);
            }
        }
        Ok(Plan::build_blocks(
            cell,
            config,
            &blocks,
            ModuleTree::ZeroCostNas201,
        ))
    }

    /// The network of an arch of either space: NAS-Bench-201's TinyNetwork under `config`
    /// for a topology-space arch; the size space's network of its widths, with `config`'s
    /// classes and input size, for a size-space arch (`config`'s channels and cells, which
    /// shape the topology space's network, do not apply there).
    pub fn of_arch(arch: &AnyArch, config: &MacroConfig) -> Result<Plan, PlanError> {
        match arch {
            AnyArch::Tss(arch) => Plan::build(&Cell::from(*arch), config),
            AnyArch::Sss(arch) => {
                Plan::build_sized(arch.widths(), config.classes, config.input_size)
            }
        }
    }

    /// Builds the NATS-Bench size-space network (its `DynamicShapeTinyNet`) of `widths`
    /// (C1..C5: the stem and first cell, the first reduction block, the second cell, the
    /// second reduction block, the third cell) for `classes` outputs and
    /// `input_size x input_size` images: one cell per stage, every cell the fixed
    /// genotype [`SSS_CELL`], its skip edge a conv1x1 + BN where the cell changes
    /// the width.
    pub fn build_sized(
        widths: [usize; 5],
        classes: usize,
        input_size: usize,
    ) -> Result<Plan, PlanError> {
        if widths.contains(&0) {
            return Err(PlanError::Zero("width"));
        }
        let config = MacroConfig {
            channels: widths[0],
            cells_per_stage: 1,
            classes,
            input_size,
            input_channels: 3,
            stem: true,
        };
        Plan::check(&config)?;
        let blocks = [
            Block::Cell { width: widths[0] },
            Block::Reduction { width: widths[1] },
            Block::Cell { width: widths[2] },
            Block::Reduction { width: widths[3] },
            Block::Cell { width: widths[4] },
        ];
        Ok(Plan::build_blocks(
            &Cell::from(SSS_CELL),
            &config,
            &blocks,
            ModuleTree::ShapeTinyNet,
        ))
    }

    /// The network of `blocks` after the stem (if `config` has one), then lastact, the
    /// pool and the classifier; its module outputs as the hooks on `tree` fire.
    fn build_blocks(cell: &Cell, config: &MacroConfig, blocks: &[Block], tree: ModuleTree) -> Plan {
        let mut b = Builder::new(
            *cell,
            *config,
            SlotShape {
                c: config.input_channels,
                h: config.input_size,
                w: config.input_size,
            },
        );
        let mut x = Some(INPUT);
        let mut shape = b.slots[INPUT];
        if config.stem {
            let conv = b.conv(x, "stem.conv", config.channels, 3, 1, 1, shape);
            shape = conv.1;
            x = b.batch_norm(conv.0, "stem.bn", shape);
            // Conv; BN, the stem's Sequential (and NAS201Model's stem module).
            b.module_output(conv.0, shape, 1);
            b.module_output(x, shape, tree.stem_bn_modules());
        }
        let mut features = vec![Feature {
            kind: FeatureKind::Stem,
            slot: x,
            shape,
        }];
        let mut position = 0;
        for block in blocks {
            let kind = match *block {
                Block::Reduction { width } => {
                    (x, shape) = b.resnet_block(x, &format!("cells.{position}"), shape, width);
                    FeatureKind::Reduction
                }
                Block::Cell { width } => {
                    (x, shape) = b.cell(x, &format!("cells.{position}"), shape, width);
                    FeatureKind::Cell
                }
                Block::StageEnd => {
                    b.module_output(x, shape, 1);
                    continue;
                }
            };
            position += 1;
            features.push(Feature {
                kind,
                slot: x,
                shape,
            });
        }
        let x = b.batch_norm(x, "lastact.bn", shape);
        b.module_output(x, shape, 1);
        let x = b.relu(x, 1, shape);
        // The ReLU and lastact's Sequential.
        b.module_output(x, shape, 2);
        let pooled_shape = SlotShape {
            c: shape.c,
            h: 1,
            w: 1,
        };
        let pooled = match x {
            Some(x) => b.layer(pooled_shape, |y| Layer::GlobalAvgPool { x, y }),
            None => b.layer(pooled_shape, |y| Layer::Zero { y }),
        };
        // The pool (and NAS201Model's `top` module around lastact and the pool).
        b.module_output(Some(pooled), pooled_shape, tree.pool_modules());
        let w = b.param(
            "classifier.weight",
            ParamKind::LinearWeight,
            vec![config.classes, shape.c],
            shape.c,
        );
        let bias = b.param(
            "classifier.bias",
            ParamKind::LinearBias,
            vec![config.classes],
            shape.c,
        );
        let out_shape = SlotShape {
            c: config.classes,
            h: 1,
            w: 1,
        };
        let output = b.layer(out_shape, |y| Layer::Linear {
            x: pooled,
            y,
            w,
            b: bias,
        });
        // The classifier and the whole model.
        b.module_output(Some(output), out_shape, 2);
        let module_outputs = std::mem::take(&mut b.module_outputs);
        let mut plan = b.finish(output);
        plan.features = features;
        plan.module_outputs = module_outputs;
        plan
    }

    /// One cell alone on a `channels x size x size` input, no stem, no classifier: the
    /// TE-NAS linear-region setting (its released code uses 1 channel). The output slot is
    /// the cell's output node (a zero slot when that node is identically zero);
    /// `config.classes` is 0.
    pub fn single_cell(cell: &Cell, channels: usize, size: usize) -> Result<Plan, PlanError> {
        Plan::single_cell_impl(cell, channels, size, false)
    }

    /// [`Plan::single_cell`] followed by `lastact` (BatchNorm -> ReLU, no pool, no
    /// classifier): the network TE-NAS's released code counts linear regions on (its
    /// `TinyNetworkDarts` at depth 1 keeps `lastact`, whose ReLU its hooks record). The
    /// output slot is the ReLU's output (a zero slot when the cell's output is zero).
    pub fn single_cell_with_lastact(
        cell: &Cell,
        channels: usize,
        size: usize,
    ) -> Result<Plan, PlanError> {
        Plan::single_cell_impl(cell, channels, size, true)
    }

    fn single_cell_impl(
        cell: &Cell,
        channels: usize,
        size: usize,
        lastact: bool,
    ) -> Result<Plan, PlanError> {
        if channels == 0 {
            return Err(PlanError::Zero("channels"));
        }
        if size == 0 {
            return Err(PlanError::Zero("input size"));
        }
        let config = MacroConfig {
            channels,
            cells_per_stage: 1,
            classes: 0,
            input_size: size,
            input_channels: channels,
            stem: false,
        };
        let shape = SlotShape {
            c: channels,
            h: size,
            w: size,
        };
        let mut b = Builder::new(*cell, config, shape);
        let (mut out, _) = b.cell(Some(INPUT), "cells.0", shape, channels);
        if lastact {
            let x = b.batch_norm(out, "lastact.bn", shape);
            out = b.relu(x, 1, shape);
        }
        let output = match out {
            Some(out) => out,
            None => b.layer(shape, |y| Layer::Zero { y }),
        };
        Ok(b.finish(output))
    }

    /// The slot the global average pool reads: the last feature map (Zen-score's output).
    pub fn feature_slot(&self) -> Option<SlotId> {
        self.layers.iter().find_map(|l| match l {
            Layer::GlobalAvgPool { x, .. } => Some(*x),
            _ => None,
        })
    }

    /// Values of one image at the input.
    pub fn input_len(&self) -> usize {
        self.slots[INPUT].len()
    }

    /// Values of one image at the output (the logits).
    pub fn output_len(&self) -> usize {
        self.slots[self.output].len()
    }

    /// The layer of the ReLU feeding the global average pool (`lastact`), if any (a dead
    /// network has none).
    pub fn lastact_layer(&self) -> Option<usize> {
        let slot = self.feature_slot()?;
        self.layers
            .iter()
            .position(|l| matches!(l, Layer::Relu { y, .. } if *y == slot))
    }

    /// The convolution and linear layers, in order, each with its output's shape (where
    /// the released zero-cost code hooks its fisher sites).
    pub fn weighted_layers(&self) -> Vec<(usize, SlotShape)> {
        self.layers
            .iter()
            .enumerate()
            .filter(|(_, l)| matches!(l, Layer::Conv { .. } | Layer::Linear { .. }))
            .map(|(i, l)| (i, self.slots[l.output()]))
            .collect()
    }

    /// Parameters in the plan (dead edges carry none).
    pub fn param_count(&self) -> usize {
        self.params.iter().map(ParamSpec::len).sum()
    }

    /// Multiply-adds per image of convolutions and linear layers (bias adds counted as the
    /// benchmark counts them).
    pub fn macs(&self) -> usize {
        self.layers
            .iter()
            .map(|layer| match layer {
                Layer::Conv { geom, .. } => geom.macs(),
                Layer::Linear { w, b, .. } => self.params[*w].len() + self.params[*b].len(),
                _ => 0,
            })
            .sum()
    }

    /// ReLU units per image over every ReLU module of the reference network, the ones with
    /// constant codes included (NASWOT's code length N_A).
    pub fn relu_units(&self) -> usize {
        let computed: usize = self
            .layers
            .iter()
            .map(|layer| match layer {
                Layer::Relu { y, modules, .. } => self.slots[*y].len() * *modules as usize,
                _ => 0,
            })
            .sum();
        let constant: usize = self
            .constant_codes
            .iter()
            .map(|c| c.units * c.modules as usize)
            .sum();
        computed + constant
    }

    /// The layers after which the network can be resumed from one tensor: block outputs
    /// (a `Sum`: a cell's last node or a residual block's output) that are all the later
    /// layers read. Resuming there needs only that tensor, not the rest of the pass.
    pub fn block_boundaries(&self) -> Vec<usize> {
        // The last layer reading each slot (the output counts as read at the end).
        let mut last_read = vec![None; self.slots.len()];
        for (index, layer) in self.layers.iter().enumerate() {
            for x in layer.inputs() {
                last_read[x] = Some(index);
            }
        }
        last_read[self.output] = Some(self.layers.len());
        // How many slots written so far (the input first) a later layer still reads; every
        // slot has one writer, and a sum may read a slot twice.
        let mut live = usize::from(last_read[INPUT].is_some());
        let mut boundaries = Vec::new();
        for (index, layer) in self.layers.iter().enumerate() {
            let mut inputs = layer.inputs();
            inputs.sort_unstable();
            inputs.dedup();
            live -= inputs
                .iter()
                .filter(|&&x| last_read[x] == Some(index))
                .count();
            let carried = last_read[layer.output()].is_some_and(|r| r > index);
            live += usize::from(carried);
            if matches!(layer, Layer::Sum { .. }) && carried && live == 1 {
                boundaries.push(index);
            }
        }
        boundaries
    }

    /// How many leading layers `self` and `other` share: the same layers on slots of the
    /// same shapes with the same parameters (name, shape, kind: the same initial values
    /// under one seed). On the same input and weights' seed, those layers compute the same
    /// values in both networks.
    pub fn common_prefix(&self, other: &Plan) -> usize {
        if self.slots[INPUT] != other.slots[INPUT] {
            return 0;
        }
        let same_params = |a: &[ParamId], b: &[ParamId]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(&p, &q)| self.params[p] == other.params[q])
        };
        self.layers
            .iter()
            .zip(&other.layers)
            .take_while(|(a, b)| {
                a == b
                    && a.inputs()
                        .into_iter()
                        .chain([a.output()])
                        .all(|s| self.slots[s] == other.slots[s])
                    && same_params(&a.params(), &b.params())
            })
            .count()
    }

    /// True when the logits do not depend on the input (no non-zero path through the cells).
    pub fn is_dead(&self) -> bool {
        self.layers.iter().any(|l| matches!(l, Layer::Zero { .. }))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, layer) in self.layers.iter().enumerate() {
            let s = self.slots[layer.output()];
            writeln!(f, "{i:4} {layer:?} -> {}x{}x{}", s.c, s.h, s.w)?;
        }
        Ok(())
    }
}

/// A value during building: a slot, or `None` for an identically zero tensor.
type Value = Option<SlotId>;

struct Builder {
    cell: Cell,
    config: MacroConfig,
    slots: Vec<SlotShape>,
    layers: Vec<Layer>,
    params: Vec<ParamSpec>,
    constant_codes: Vec<ConstantCode>,
    module_outputs: Vec<ModuleOutput>,
}

impl Builder {
    fn new(cell: Cell, config: MacroConfig, input: SlotShape) -> Builder {
        Builder {
            cell,
            config,
            slots: vec![input],
            layers: Vec::new(),
            params: Vec::new(),
            constant_codes: Vec::new(),
            module_outputs: Vec::new(),
        }
    }

    /// The plan built so far, with `output` as its output slot.
    fn finish(self, output: SlotId) -> Plan {
        Plan {
            config: self.config,
            cell: self.cell,
            slots: self.slots,
            layers: self.layers,
            params: self.params,
            constant_codes: self.constant_codes,
            output,
            features: Vec::new(),
            module_outputs: Vec::new(),
        }
    }

    /// Records that `modules` modules of the reference network output `value`.
    fn module_output(&mut self, value: Value, shape: SlotShape, modules: u32) {
        self.module_outputs.push(ModuleOutput {
            slot: value,
            shape,
            modules,
        });
    }

    /// Appends a layer writing a new slot of `shape`; returns that slot.
    fn layer(&mut self, shape: SlotShape, make: impl FnOnce(SlotId) -> Layer) -> SlotId {
        let y = self.slots.len();
        self.slots.push(shape);
        self.layers.push(make(y));
        y
    }

    fn param(&mut self, name: &str, kind: ParamKind, shape: Vec<usize>, fan_in: usize) -> ParamId {
        self.params.push(ParamSpec {
            name: name.to_string(),
            kind,
            shape,
            fan_in,
        });
        self.params.len() - 1
    }

    fn relu(&mut self, x: Value, modules: u32, shape: SlotShape) -> Value {
        match x {
            Some(x) => Some(self.layer(shape, |y| Layer::Relu { x, y, modules })),
            None => {
                self.constant_codes.push(ConstantCode {
                    units: shape.len(),
                    modules,
                });
                None
            }
        }
    }

    /// A convolution; a zero input gives a zero output and no parameters.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        x: Value,
        name: &str,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
        shape: SlotShape,
    ) -> (Value, SlotShape) {
        let geom = ConvGeom {
            cin: shape.c,
            cout,
            h: shape.h,
            w: shape.w,
            k,
            stride,
            pad,
        };
        let out = SlotShape {
            c: cout,
            h: geom.out_h(),
            w: geom.out_w(),
        };
        let Some(x) = x else { return (None, out) };
        let w = self.param(
            &format!("{name}.weight"),
            ParamKind::ConvWeight,
            vec![cout, shape.c, k, k],
            shape.c * k * k,
        );
        (
            Some(self.layer(out, |y| Layer::Conv { x, y, w, geom })),
            out,
        )
    }

    /// Batch norm; on a zero input the output is beta, zero at initialisation, so it stays
    /// zero (the reference's BN shift there is a parameter no input ever reaches).
    fn batch_norm(&mut self, x: Value, name: &str, shape: SlotShape) -> Value {
        let x = x?;
        let gamma = self.param(
            &format!("{name}.weight"),
            ParamKind::BnGamma,
            vec![shape.c],
            0,
        );
        let beta = self.param(&format!("{name}.bias"), ParamKind::BnBeta, vec![shape.c], 0);
        Some(self.layer(shape, |y| Layer::BatchNorm { x, y, gamma, beta }))
    }

    fn sum(&mut self, terms: Vec<SlotId>, shape: SlotShape) -> Value {
        match terms.len() {
            0 => None,
            1 => Some(terms[0]),
            _ => Some(self.layer(shape, |y| Layer::Sum { xs: terms, y })),
        }
    }

    /// One cell on an input of `in_shape` whose other nodes have `width` channels: node i
    /// is the sum over its incoming edges of every op on the edge. An edge from the input
    /// changes the width: its convs map `in_shape.c` channels to `width`, and its skip
    /// becomes conv1x1 + BN (the benchmark's `FactorizedReduce` at stride 1).
    fn cell(
        &mut self,
        input: Value,
        prefix: &str,
        in_shape: SlotShape,
        width: usize,
    ) -> (Value, SlotShape) {
        let shape = SlotShape {
            c: width,
            ..in_shape
        };
        let shape_of = |node: usize| if node == 0 { in_shape } else { shape };
        let mut nodes: [Value; NODES] = [None; NODES];
        let mut relus: [Value; NODES] = [None; NODES];
        nodes[0] = input;
        for to in 0..NODES {
            if to > 0 {
                let mut terms = Vec::new();
                for (edge, &(from, _)) in EDGES.iter().enumerate().filter(|(_, e)| e.1 == to) {
                    for op in self.cell.edges[edge].iter() {
                        let name = format!("{prefix}.edge{from}{to}.{}", op.name());
                        let out = match op {
                            Op::None => {
                                self.module_output(None, shape, 1);
                                None
                            }
                            Op::SkipConnect if shape_of(from).c != width => {
                                let conv = self.conv(
                                    nodes[from],
                                    &format!("{name}.conv"),
                                    width,
                                    1,
                                    1,
                                    0,
                                    shape_of(from),
                                );
                                let bn = self.batch_norm(conv.0, &format!("{name}.bn"), shape);
                                // xautodl's FactorizedReduce at stride 1 (only the size
                                // space's cells change the width): its conv; its BN and
                                // itself (its ReLU is never called at stride 1).
                                self.module_output(conv.0, shape, 1);
                                self.module_output(bn, shape, 2);
                                bn
                            }
                            Op::SkipConnect => {
                                self.module_output(nodes[from], shape, 1);
                                nodes[from]
                            }
                            Op::AvgPool3x3 => {
                                // The benchmark would put a ReLU-conv1x1-BN before a pool
                                // that changes the width; no network built here has one.
                                assert_eq!(shape_of(from).c, width, "a width-changing pool");
                                let out = nodes[from]
                                    .map(|x| self.layer(shape, |y| Layer::AvgPool3x3 { x, y }));
                                // The AvgPool2d and its POOLING wrapper.
                                self.module_output(out, shape, 2);
                                out
                            }
                            Op::Conv1x1 | Op::Conv3x3 => {
                                let k = op.kernel().unwrap_or(1);
                                let conv = self.conv(
                                    relus[from],
                                    &format!("{name}.conv"),
                                    width,
                                    k,
                                    1,
                                    k / 2,
                                    shape_of(from),
                                );
                                let bn = self.batch_norm(conv.0, &format!("{name}.bn"), shape);
                                self.relu_conv_bn_outputs(
                                    (relus[from], shape_of(from)),
                                    conv.0,
                                    bn,
                                    shape,
                                );
                                bn
                            }
                        };
                        terms.extend(out);
                    }
                }
                nodes[to] = self.sum(terms, shape);
            }
            // Every conv op leaving this node applies its own ReLU to the node: compute it
            // once, counted as that many modules.
            let modules: usize = EDGES
                .iter()
                .enumerate()
                .filter(|(_, e)| e.0 == to)
                .map(|(edge, _)| {
                    self.cell.edges[edge]
                        .iter()
                        .filter(|op| op.is_conv())
                        .count()
                })
                .sum();
            if modules > 0 {
                relus[to] = self.relu(nodes[to], modules as u32, shape_of(to));
            }
        }
        self.module_output(nodes[NODES - 1], shape, 1);
        (nodes[NODES - 1], shape)
    }

    /// The module outputs of one ReLUConvBN: its ReLU; the conv; the BN, its Sequential
    /// and the ReLUConvBN itself.
    fn relu_conv_bn_outputs(
        &mut self,
        (relu, relu_shape): (Value, SlotShape),
        conv: Value,
        bn: Value,
        shape: SlotShape,
    ) {
        self.module_output(relu, relu_shape, 1);
        self.module_output(conv, shape, 1);
        self.module_output(bn, shape, 3);
    }

    /// The reduction block between stages: ReLU-Conv3x3(s2)-BN, ReLU-Conv3x3-BN, plus a
    /// shortcut AvgPool2x2 -> Conv1x1; to `cout` channels at half the resolution.
    fn resnet_block(
        &mut self,
        x: Value,
        prefix: &str,
        shape: SlotShape,
        cout: usize,
    ) -> (Value, SlotShape) {
        let relu_a = self.relu(x, 1, shape);
        let (conv_a, half) = self.conv(
            relu_a,
            &format!("{prefix}.conv_a.conv"),
            cout,
            3,
            2,
            1,
            shape,
        );
        let a = self.batch_norm(conv_a, &format!("{prefix}.conv_a.bn"), half);
        self.relu_conv_bn_outputs((relu_a, shape), conv_a, a, half);
        let relu_b = self.relu(a, 1, half);
        let (conv_b, _) = self.conv(
            relu_b,
            &format!("{prefix}.conv_b.conv"),
            cout,
            3,
            1,
            1,
            half,
        );
        let b = self.batch_norm(conv_b, &format!("{prefix}.conv_b.bn"), half);
        self.relu_conv_bn_outputs((relu_b, half), conv_b, b, half);
        let pooled_shape = SlotShape { c: shape.c, ..half };
        let pooled = x.map(|x| self.layer(pooled_shape, |y| Layer::AvgPool2x2 { x, y }));
        let (shortcut, _) = self.conv(
            pooled,
            &format!("{prefix}.shortcut.conv"),
            cout,
            1,
            1,
            0,
            pooled_shape,
        );
        // The residual's AvgPool2d; its conv and Sequential.
        self.module_output(pooled, pooled_shape, 1);
        self.module_output(shortcut, half, 2);
        let terms = [shortcut, b].into_iter().flatten().collect();
        let out = self.sum(terms, half);
        self.module_output(out, half, 1);
        (out, half)
    }
}
