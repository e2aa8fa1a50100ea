//! Runs a [`Plan`] on a [`Backend`]: forward, keeping every slot a backward pass needs,
//! then backward to parameter gradients (batched, or per sample one layer at a time)
//! and, on request, to the input.

use super::{Backend, BnGeom, BnGrad};
use crate::backend::Real;
use crate::net::init::InitRule;
use crate::net::plan::{Layer, ParamId, Plan, SlotId, INPUT};
use crate::net::BN_EPS;
use std::collections::HashMap;

/// What batch-norm layers do in a forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BnStatistics {
    /// Statistics of the whole batch (training mode, as the scores use by default).
    Batch,
    /// Each image normalised as a batch of one (the KNAS per-sample setting).
    PerSample,
    /// Batch norm is the identity (synflow removes it).
    Bypass,
}

/// The sign codes of one ReLU module group, streamed by [`Executor::forward_with_codes`].
pub struct CodeBlock<'c, B: Backend> {
    /// `[n][ceil(units/64)]` words; bit set where the ReLU's input (equally, its output) is > 0.
    pub codes: &'c B::Words,
    /// Units per image.
    pub units: usize,
    /// How many ReLU modules of the reference network share these codes.
    pub modules: u32,
    /// The plan layer, or `None` for modules whose input is identically zero (all bits 0).
    pub layer: Option<usize>,
}

/// A sink for code blocks.
pub type CodeSink<'s, B> = &'s mut dyn FnMut(CodeBlock<'_, B>);

/// What [`Executor::forward_streamed`] streams, in the order of the layers.
pub enum Streamed<'c, B: Backend> {
    /// The codes of a ReLU layer (or of modules with identically zero input, at the end).
    Codes(CodeBlock<'c, B>),
    /// The output of block boundary `layer` ([`Plan::block_boundaries`]): all that the
    /// later layers read, so a pass can resume from a copy of it.
    Boundary { layer: usize, value: &'c B::Buf },
}

/// A sink for what a forward-only pass streams.
pub type StreamSink<'s, B> = &'s mut dyn FnMut(Streamed<'_, B>);

/// Where a forward-only pass starts.
pub enum ForwardStart<B: Backend> {
    /// At the input, with this batch (`[n][c][h][w]`).
    Input(B::Buf),
    /// After block boundary `layer`, with its output: the layers up to it are not run
    /// (their codes are not streamed, their batch-norm statistics are not kept).
    After { layer: usize, value: B::Buf },
}

/// An observer of each layer's output and its gradient during backward:
/// `(layer index, output y, gradient dy)`, called once dy is complete.
pub type GradObserver<'s, B> = &'s mut dyn FnMut(usize, &<B as Backend>::Buf, &<B as Backend>::Buf);

/// Settings of a backward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackwardOptions {
    pub bn_grad: BnGrad,
    /// Also compute the gradient with respect to the input batch.
    pub input_grad: bool,
}

impl Default for BackwardOptions {
    fn default() -> Self {
        BackwardOptions {
            bn_grad: BnGrad::Full,
            input_grad: false,
        }
    }
}

/// What a backward pass does with parameter gradients.
pub enum ParamGrads<'v, B: Backend> {
    /// None are computed (only the input gradient, say).
    Skip,
    /// Summed over the batch, returned in [`Gradients::params`].
    Batched,
    /// Per image, one parameter at a time: the visitor gets `(param, [n][len] buffer)` and
    /// must use it before returning (the buffer is scratch, reused for the next one).
    PerSample(&'v mut dyn FnMut(ParamId, &B::Buf)),
}

/// Results of a backward pass.
pub struct Gradients<B: Backend> {
    /// One gradient per plan parameter (with [`ParamGrads::Batched`]).
    pub params: Option<Vec<B::Buf>>,
    /// Gradient with respect to the input batch (with `input_grad`).
    pub input: Option<B::Buf>,
}

/// Executes one plan with one set of weights on one backend.
pub struct Executor<'a, B: Backend> {
    backend: &'a B,
    plan: &'a Plan,
    params: Vec<B::Buf>,
    slots: Vec<B::Buf>,
    /// `(mean, inv_std)` of every batch-norm layer, by layer index.
    bn_stats: Vec<Option<(B::Buf, B::Buf)>>,
    n: usize,
    bn: BnStatistics,
    /// The buffers of the backward passes (one per lane of [`Executor::backward_each`]).
    workspaces: Vec<Workspace<B>>,
    /// Frozen ReLU inputs by layer index (see [`Executor::freeze_relu_masks`]).
    relu_masks: Option<Vec<Option<B::Buf>>>,
    /// Whether every slot of the last forward pass is still held (false after a
    /// forward-only pass, which releases intermediate slots as it goes).
    slots_complete: bool,
}

impl<'a, B: Backend> Executor<'a, B> {
    /// An executor with the given parameter values (one buffer per plan parameter).
    pub fn new(backend: &'a B, plan: &'a Plan, params: Vec<B::Buf>) -> Self {
        assert_eq!(params.len(), plan.params.len(), "one buffer per parameter");
        for (buf, spec) in params.iter().zip(&plan.params) {
            assert_eq!(backend.buf_len(buf), spec.len(), "parameter {}", spec.name);
        }
        Executor {
            backend,
            plan,
            params,
            slots: (0..plan.slots.len()).map(|_| B::Buf::default()).collect(),
            bn_stats: (0..plan.layers.len()).map(|_| None).collect(),
            n: 0,
            bn: BnStatistics::Batch,
            workspaces: vec![Workspace::default()],
            relu_masks: None,
            slots_complete: false,
        }
    }

    /// An executor with these parameter values (one per plan parameter, in f64, rounded to
    /// the backend's type): another initialisation than the default, as Zen's and SWAP's
    /// N(0, 1) weights.
    pub fn with_values(backend: &'a B, plan: &'a Plan, values: &[Vec<f64>]) -> Self {
        let params = values
            .iter()
            .map(|v| backend.upload(&to_real::<B::Real>(v)))
            .collect();
        Executor::new(backend, plan, params)
    }

    /// An executor with the deterministic default initialisation for `seed`.
    pub fn with_init(backend: &'a B, plan: &'a Plan, seed: u64) -> Self {
        let rules: Vec<(InitRule, usize)> = plan
            .params
            .iter()
            .map(|spec| (InitRule::of(spec), spec.len()))
            .collect();
        Executor::new(backend, plan, backend.draw_params(seed, &rules))
    }

    /// The plan, borrowed for the executor's whole lifetime (not just `&self`), so that
    /// a score can read it while the executor runs a pass.
    pub fn plan(&self) -> &'a Plan {
        self.plan
    }

    /// The backend, borrowed for the executor's whole lifetime, so that a gradient visitor
    /// can use it during a backward pass.
    pub fn backend(&self) -> &'a B {
        self.backend
    }

    pub fn params(&self) -> &[B::Buf] {
        &self.params
    }

    /// Parameters, for scores that transform the weights (synflow takes |W|).
    pub fn params_mut(&mut self) -> &mut [B::Buf] {
        &mut self.params
    }

    /// Runs `f` with parameter `ids[k]` replaced by `moved[k]`, then puts the executor's
    /// own weights back (the moved ones are dropped): a scoped perturbation of the weights
    /// (GraSP's gradients at `W +- eps g`).
    pub fn with_params_replaced<R>(
        &mut self,
        ids: &[usize],
        moved: Vec<B::Buf>,
        f: impl FnOnce(&mut Self) -> R,
    ) -> R {
        assert_eq!(ids.len(), moved.len(), "one replacement per parameter");
        let own: Vec<B::Buf> = ids
            .iter()
            .zip(moved)
            .map(|(&p, w)| std::mem::replace(&mut self.params[p], w))
            .collect();
        let result = f(self);
        for (&p, w) in ids.iter().zip(own) {
            self.params[p] = w;
        }
        result
    }

    /// Holds every ReLU's sign pattern at that of the last forward pass: until
    /// [`Executor::unfreeze_relu_masks`], each ReLU passes its input where its input then
    /// was positive, in forward and backward. The network becomes smooth in the weights around that
    /// point, so differences of gradients give the Hessian autograd gives (ReLU'' = 0 with
    /// the pattern fixed) instead of jumping where a unit changes sign (GraSP).
    pub fn freeze_relu_masks(&mut self) {
        let be = self.backend;
        let masks = self
            .plan
            .layers
            .iter()
            .map(|layer| match layer {
                Layer::Relu { x, .. } => {
                    let mut m = be.alloc(be.buf_len(&self.slots[*x]));
                    be.copy(&self.slots[*x], &mut m);
                    Some(m)
                }
                _ => None,
            })
            .collect();
        self.relu_masks = Some(masks);
    }

    /// Back to plain ReLUs.
    pub fn unfreeze_relu_masks(&mut self) {
        self.relu_masks = None;
    }

    /// Batch size of the last forward pass.
    pub fn batch(&self) -> usize {
        self.n
    }

    /// A slot's activations after a forward pass (`[n][c][h][w]`).
    pub fn slot(&self, slot: usize) -> &B::Buf {
        &self.slots[slot]
    }

    /// The logits after a forward pass (`[n][classes]`).
    pub fn logits(&self) -> &B::Buf {
        &self.slots[self.plan.output]
    }

    /// Runs the plan forward on `n` images (`[n][c][h][w]`).
    pub fn forward(&mut self, input: B::Buf, n: usize, bn: BnStatistics) {
        self.forward_impl(ForwardStart::Input(input), n, bn, None, &[]);
    }

    /// Runs the plan forward, streaming the sign codes of every ReLU's input to `sink`, one
    /// layer at a time (then the all-zero codes of modules whose input is identically zero).
    ///
    /// Forward only: each intermediate slot goes back to the backend right after its last
    /// reader, so a few buffers cycle through the cache instead of the whole network's
    /// activations streaming through memory. Only the logits remain; a backward pass or
    /// [`Executor::slot`] of an intermediate slot needs a fresh [`Executor::forward`].
    pub fn forward_with_codes(
        &mut self,
        input: B::Buf,
        n: usize,
        bn: BnStatistics,
        sink: CodeSink<'_, B>,
    ) {
        let mut streamed = |item: Streamed<'_, B>| {
            if let Streamed::Codes(block) = item {
                sink(block)
            }
        };
        self.forward_impl(ForwardStart::Input(input), n, bn, Some(&mut streamed), &[]);
    }

    /// [`Executor::forward_with_codes`] from `start`, also streaming the output of every
    /// block boundary after it: a pass of a network that shares its first blocks with one
    /// run before resumes from a copy of the shared blocks' output.
    pub fn forward_streamed(
        &mut self,
        start: ForwardStart<B>,
        n: usize,
        bn: BnStatistics,
        sink: StreamSink<'_, B>,
    ) {
        let boundaries = self.plan.block_boundaries();
        self.forward_impl(start, n, bn, Some(sink), &boundaries);
    }

    fn forward_impl(
        &mut self,
        start: ForwardStart<B>,
        n: usize,
        bn: BnStatistics,
        mut sink: Option<StreamSink<'_, B>>,
        boundaries: &[usize],
    ) {
        let be = self.backend;
        let plan = self.plan;
        if n != self.n {
            self.bn_stats.iter_mut().for_each(|s| *s = None);
        }
        self.n = n;
        self.bn = bn;
        let streaming = sink.is_some();
        let first = match start {
            ForwardStart::Input(input) => {
                assert_eq!(
                    be.buf_len(&input),
                    n * plan.slots[INPUT].len(),
                    "input size"
                );
                self.slots[INPUT] = input;
                0
            }
            ForwardStart::After { layer, value } => {
                assert!(
                    boundaries.contains(&layer),
                    "layer {layer} is no block boundary"
                );
                assert!(self.relu_masks.is_none(), "resuming with frozen ReLU masks");
                let out = plan.layers[layer].output();
                assert_eq!(
                    be.buf_len(&value),
                    n * plan.slots[out].len(),
                    "resumed size"
                );
                self.slots[out] = value;
                self.bn_stats[..=layer].iter_mut().for_each(|s| *s = None);
                layer + 1
            }
        };
        self.slots_complete = !streaming;
        // In a forward-only pass, the layer after which each slot is read no more.
        let last_reader: Vec<Option<usize>> = if streaming {
            let mut last = vec![None; plan.slots.len()];
            for (index, layer) in plan.layers.iter().enumerate() {
                for x in layer.inputs() {
                    last[x] = Some(index);
                }
            }
            last[plan.output] = None;
            last
        } else {
            Vec::new()
        };
        let group = bn_group(bn, n);
        let mut codes = B::Words::default();
        for (index, layer) in plan.layers.iter().enumerate().skip(first) {
            let out = layer.output();
            let mut y = std::mem::take(&mut self.slots[out]);
            let len = n * plan.slots[out].len();
            if be.buf_len(&y) != len {
                // Every forward primitive overwrites its whole output.
                be.release(std::mem::take(&mut y));
                y = be.alloc_output(len);
            }
            let slots = &self.slots;
            let p = &self.params;
            match layer {
                Layer::Conv { x, w, geom, .. } => {
                    be.conv_forward(geom, n, &slots[*x], &p[*w], &mut y)
                }
                Layer::BatchNorm { x, .. } if bn == BnStatistics::Bypass => {
                    be.copy(&slots[*x], &mut y)
                }
                Layer::BatchNorm { x, gamma, beta, .. } => {
                    let s = plan.slots[*x];
                    let g = BnGeom {
                        n,
                        c: s.c,
                        hw: s.hw(),
                        group,
                    };
                    let (mut mean, mut inv_std) =
                        self.bn_stats[index].take().unwrap_or_else(|| {
                            (be.alloc(g.groups() * s.c), be.alloc(g.groups() * s.c))
                        });
                    if be.buf_len(&mean) != g.groups() * s.c {
                        mean = be.alloc(g.groups() * s.c);
                        inv_std = be.alloc(g.groups() * s.c);
                    }
                    be.bn_forward(
                        &g,
                        BN_EPS,
                        &slots[*x],
                        &p[*gamma],
                        &p[*beta],
                        &mut y,
                        &mut mean,
                        &mut inv_std,
                    );
                    self.bn_stats[index] = Some((mean, inv_std));
                }
                Layer::Relu { x, modules, .. } => {
                    match self.relu_masks.as_ref().and_then(|m| m[index].as_ref()) {
                        Some(mask) => {
                            assert_eq!(be.buf_len(mask), be.buf_len(&slots[*x]), "frozen mask");
                            be.fill_zero(&mut y);
                            be.relu_backward(mask, &slots[*x], &mut y);
                        }
                        None => be.relu_forward(&slots[*x], &mut y),
                    }
                    if let Some(sink) = sink.as_mut() {
                        let units = plan.slots[*x].len();
                        let words = n * units.div_ceil(64);
                        if be.buf_len_words(&codes) != words {
                            codes = be.alloc_words(words);
                        }
                        be.pack_signs(&slots[*x], n, units, &mut codes);
                        sink(Streamed::Codes(CodeBlock {
                            codes: &codes,
                            units,
                            modules: *modules,
                            layer: Some(index),
                        }));
                    }
                }
                Layer::AvgPool3x3 { x, .. } => {
                    let s = plan.slots[*x];
                    be.avgpool3x3_forward(n, s.c, s.h, s.w, &slots[*x], &mut y)
                }
                Layer::AvgPool2x2 { x, .. } => {
                    let s = plan.slots[*x];
                    be.avgpool2x2_forward(n, s.c, s.h, s.w, &slots[*x], &mut y)
                }
                Layer::GlobalAvgPool { x, .. } => {
                    let s = plan.slots[*x];
                    be.global_avgpool_forward(n, s.c, s.hw(), &slots[*x], &mut y)
                }
                Layer::Linear { x, w, b, .. } => {
                    let (fin, fout) = (plan.slots[*x].len(), plan.slots[out].len());
                    be.linear_forward(n, fin, fout, &slots[*x], &p[*w], &p[*b], &mut y)
                }
                Layer::Sum { xs, .. } => {
                    // Streaming, a term read last here (and once) becomes the sum in place:
                    // no copy of a whole activation. Only one of the first two, so that the
                    // additions stay `(x0 + x1) + x2 ...` bit for bit (a + b == b + a).
                    let reused = streaming
                        .then(|| {
                            xs.iter().take(2).position(|&x| {
                                last_reader[x] == Some(index)
                                    && xs.iter().filter(|&&t| t == x).count() == 1
                            })
                        })
                        .flatten();
                    let first = match reused {
                        Some(at) => {
                            be.release(std::mem::take(&mut y));
                            y = std::mem::take(&mut self.slots[xs[at]]);
                            at
                        }
                        None => {
                            be.copy(&self.slots[xs[0]], &mut y);
                            0
                        }
                    };
                    for (at, x) in xs.iter().enumerate() {
                        if at != first {
                            be.add_assign(&mut y, &self.slots[*x]);
                        }
                    }
                }
                Layer::Zero { .. } => be.fill_zero(&mut y),
            }
            self.slots[out] = y;
            if let Some(sink) = sink.as_mut().filter(|_| boundaries.contains(&index)) {
                sink(Streamed::Boundary {
                    layer: index,
                    value: &self.slots[out],
                });
            }
            if streaming {
                for x in layer.inputs() {
                    if last_reader[x] == Some(index) {
                        be.release(std::mem::take(&mut self.slots[x]));
                    }
                }
            }
        }
        if let Some(sink) = sink {
            for constant in &plan.constant_codes {
                let zeros = be.alloc_words(n * constant.units.div_ceil(64));
                sink(Streamed::Codes(CodeBlock {
                    codes: &zeros,
                    units: constant.units,
                    modules: constant.modules,
                    layer: None,
                }));
            }
        }
    }

    /// Batch-norm statistics of the last forward pass: `(layer index, mean, inv_std)`, each
    /// `[groups][c]` (none with [`BnStatistics::Bypass`]).
    pub fn bn_statistics(&self) -> impl Iterator<Item = (usize, &B::Buf, &B::Buf)> {
        self.bn_stats
            .iter()
            .enumerate()
            .filter(|_| self.bn != BnStatistics::Bypass)
            .filter_map(|(i, s)| s.as_ref().map(|(m, v)| (i, m, v)))
    }

    /// Backpropagates `dlogits` (`[n][classes]`) through the last forward pass.
    ///
    /// Per-sample gradients need decoupled images: batch-norm statistics per image, or
    /// held constant in the backward pass.
    pub fn backward(
        &mut self,
        dlogits: B::Buf,
        options: &BackwardOptions,
        param_grads: ParamGrads<'_, B>,
    ) -> Gradients<B> {
        self.backward_observed(dlogits, options, param_grads, None)
    }

    /// [`Executor::backward`], also showing `observer` every layer's output and gradient.
    pub fn backward_observed(
        &mut self,
        dlogits: B::Buf,
        options: &BackwardOptions,
        param_grads: ParamGrads<'_, B>,
        observer: Option<GradObserver<'_, B>>,
    ) -> Gradients<B> {
        let mut ws = std::mem::take(&mut self.workspaces[0]);
        let grads = self.backward_in(&mut ws, dlogits, options, param_grads, observer);
        self.workspaces[0] = ws;
        grads
    }

    /// The vector-Jacobian product `(dy/dx)^T dy` of slot `y` with respect to slot `x` in
    /// the last forward pass: `dy` (`[n][y]`) is seeded at `y` and carried back through the
    /// layers after the one that writes `x` (parameters held), batch norm by `bn_grad`.
    /// `None` where no path of those layers leads from `x` to `y`; `dy` itself where `x`
    /// is `y`. `x` must be written before `y` (or be the input).
    pub fn vjp(&mut self, y: SlotId, dy: B::Buf, x: SlotId, bn_grad: BnGrad) -> Option<B::Buf> {
        if x == y {
            return Some(dy);
        }
        let first_layer = match self.plan.layers.iter().position(|l| l.output() == x) {
            Some(writer) => writer + 1,
            None => {
                assert_eq!(x, INPUT, "slot {x} is written by no layer");
                0
            }
        };
        // Every slot on a path from the input carries a gradient (x may depend on the
        // input alone, as a pool of a stemless input does).
        let options = BackwardOptions {
            bn_grad,
            input_grad: true,
        };
        let segment = Segment {
            seed: y,
            first_layer,
        };
        let mut ws = std::mem::take(&mut self.workspaces[0]);
        let mut passes =
            self.backward_lockstep(&mut ws, vec![dy], segment, &options, ParamGrads::Skip, None);
        self.workspaces[0] = ws;
        let mut grads = passes.pop().expect("one pass").grads;
        let dx = grads[x].take();
        for g in grads.into_iter().flatten() {
            self.backend.release(g);
        }
        dx
    }

    /// One backward pass with the buffers of `ws`: reads the forward state only, so
    /// passes with separate workspaces can run side by side.
    fn backward_in(
        &self,
        ws: &mut Workspace<B>,
        dlogits: B::Buf,
        options: &BackwardOptions,
        param_grads: ParamGrads<'_, B>,
        observer: Option<GradObserver<'_, B>>,
    ) -> Gradients<B> {
        let mut passes = self.backward_lockstep(
            ws,
            vec![dlogits],
            self.whole_network(),
            options,
            param_grads,
            observer,
        );
        let pass = passes.pop().expect("one pass");
        let mut grads = pass.grads;
        let n = self.n;
        Gradients {
            params: pass.batched,
            input: if options.input_grad {
                Some(
                    grads[INPUT]
                        .take()
                        .unwrap_or_else(|| self.backend.alloc(n * self.plan.slots[INPUT].len())),
                )
            } else {
                None
            },
        }
    }

    /// Backward passes for each of `seeds` in lockstep, layer by layer, with the buffers of
    /// `ws`: each computes what it would alone, and the convolutions see all of them in
    /// one call ([`Backend::conv_backward_weight_many`]), which shares the work on their
    /// common input. Per-sample gradients and observers take a single seed.
    fn backward_lockstep(
        &self,
        ws: &mut Workspace<B>,
        seeds: Vec<B::Buf>,
        segment: Segment,
        options: &BackwardOptions,
        mut param_grads: ParamGrads<'_, B>,
        mut observer: Option<GradObserver<'_, B>>,
    ) -> Vec<PassGrads<B>> {
        let be = self.backend;
        let plan = self.plan;
        let n = self.n;
        assert!(n > 0, "backward before forward");
        assert!(
            self.slots_complete,
            "backward after a forward-only pass (forward_with_codes)"
        );
        for dy in &seeds {
            assert_eq!(be.buf_len(dy), n * plan.slots[segment.seed].len());
        }
        assert!(
            seeds.len() == 1 || (matches!(param_grads, ParamGrads::Batched) && observer.is_none()),
            "several seeds in lockstep take batched gradients and no observer"
        );
        if matches!(param_grads, ParamGrads::PerSample(_)) {
            assert!(
                options.bn_grad == BnGrad::FrozenStats || self.bn != BnStatistics::Batch,
                "per-sample gradients need per-image statistics or frozen statistics"
            );
        }
        let needs = self.needs_grad(options.input_grad);
        let mut passes: Vec<PassGrads<B>> = seeds
            .into_iter()
            .map(|dlogits| {
                let batched = matches!(param_grads, ParamGrads::Batched).then(|| {
                    let pool = &mut ws.pool;
                    plan.params
                        .iter()
                        .map(|p| {
                            let mut buf = take_pooled(be, pool, p.len());
                            be.fill_zero(&mut buf);
                            buf
                        })
                        .collect()
                });
                let mut grads: Vec<Option<B::Buf>> = (0..plan.slots.len()).map(|_| None).collect();
                grads[segment.seed] = Some(dlogits);
                PassGrads { grads, batched }
            })
            .collect();
        let group = bn_group(self.bn, n);
        let bypass = self.bn == BnStatistics::Bypass;
        let slots = &self.slots;
        let p = &self.params;

        for (index, layer) in plan.layers.iter().enumerate().rev() {
            if index < segment.first_layer {
                break;
            }
            // The passes share the plan, so they hold gradients for the same slots.
            if passes[0].grads[layer.output()].is_none() {
                continue;
            }
            let dys: Vec<B::Buf> = passes
                .iter_mut()
                .map(|pass| {
                    pass.grads[layer.output()]
                        .take()
                        .expect("passes in lockstep")
                })
                .collect();
            if let Some(observe) = observer.as_mut() {
                observe(index, &slots[layer.output()], &dys[0]);
            }
            if let Layer::Conv { x, w, geom, .. } = layer {
                let dy_refs: Vec<&B::Buf> = dys.iter().collect();
                if needs[*x] {
                    let len = n * geom.in_len();
                    // The first gradient into x is written, not added: no zero fill.
                    let accumulate = passes[0].grads[*x].is_some();
                    let pool = &mut ws.pool;
                    let mut dxs: Vec<&mut B::Buf> = passes
                        .iter_mut()
                        .map(|pass| {
                            pass.grads[*x].get_or_insert_with(|| take_pooled(be, pool, len))
                        })
                        .collect();
                    be.conv_backward_data_many(geom, n, &dy_refs, &p[*w], &mut dxs, accumulate);
                }
                match &mut param_grads {
                    ParamGrads::Skip => {}
                    ParamGrads::Batched => {
                        let mut dws: Vec<&mut B::Buf> = passes
                            .iter_mut()
                            .map(|pass| &mut pass.batched.as_mut().expect("batched grads")[*w])
                            .collect();
                        be.conv_backward_weight_many(geom, n, &slots[*x], &dy_refs, &mut dws);
                    }
                    ParamGrads::PerSample(visit) => {
                        let out = scratch(be, &mut ws.scratch, n * geom.weight_len(), 0);
                        be.conv_weight_grad_per_sample(geom, n, &slots[*x], &dys[0], out);
                        visit(*w, out);
                    }
                }
                for dy in dys {
                    recycle(be, &mut ws.pool, dy);
                }
                continue;
            }
            for (pass, dy) in passes.iter_mut().zip(dys) {
                let PassGrads { grads, batched } = pass;
                match layer {
                    Layer::BatchNorm { x, .. } if bypass => {
                        if needs[*x] {
                            let len = n * plan.slots[*x].len();
                            be.add_assign(grad_slot(be, &mut ws.pool, grads, *x, len), &dy);
                        }
                    }
                    Layer::Conv { .. } => unreachable!("convolutions are handled above"),
                    Layer::BatchNorm { x, gamma, beta, .. } => {
                        let s = plan.slots[*x];
                        let g = BnGeom {
                            n,
                            c: s.c,
                            hw: s.hw(),
                            group,
                        };
                        let (mean, inv_std) = self.bn_stats[index].as_ref().expect("forward stats");
                        let len = n * s.len();
                        match &mut param_grads {
                            ParamGrads::Batched => {
                                let dx =
                                    needs[*x].then(|| grad_slot(be, &mut ws.pool, grads, *x, len));
                                let all = batched.as_mut().expect("batched grads");
                                let (dgamma, dbeta) = pair_mut(all, *gamma, *beta);
                                be.bn_backward(
                                    &g,
                                    options.bn_grad,
                                    &slots[*x],
                                    &p[*gamma],
                                    mean,
                                    inv_std,
                                    &dy,
                                    dx,
                                    dgamma,
                                    dbeta,
                                );
                            }
                            ParamGrads::Skip | ParamGrads::PerSample(_) => {
                                if needs[*x] {
                                    let (dx, first) = grad_target(be, &mut ws.pool, grads, *x, len);
                                    let write = if first {
                                        B::bn_backward_data_first
                                    } else {
                                        B::bn_backward_data
                                    };
                                    let mode = options.bn_grad;
                                    let (x, gamma) = (&slots[*x], &p[*gamma]);
                                    write(be, &g, mode, x, gamma, mean, inv_std, &dy, dx);
                                }
                                if let ParamGrads::PerSample(visit) = &mut param_grads {
                                    let mut dgamma =
                                        std::mem::take(scratch(be, &mut ws.scratch, n * s.c, 0));
                                    let dbeta = scratch(be, &mut ws.scratch, n * s.c, 1);
                                    be.bn_param_grad_per_sample(
                                        &g,
                                        &slots[*x],
                                        mean,
                                        inv_std,
                                        &dy,
                                        &mut dgamma,
                                        dbeta,
                                    );
                                    visit(*gamma, &dgamma);
                                    visit(*beta, dbeta);
                                    ws.scratch.insert(scratch_key(n * s.c, 0), dgamma);
                                }
                            }
                        }
                    }
                    Layer::Relu { x, .. } => {
                        if needs[*x] {
                            let len = n * plan.slots[*x].len();
                            let mask = self.relu_masks.as_ref().and_then(|m| m[index].as_ref());
                            let (dx, first) = grad_target(be, &mut ws.pool, grads, *x, len);
                            let write = if first {
                                B::relu_backward_first
                            } else {
                                B::relu_backward
                            };
                            write(be, mask.unwrap_or(&slots[*x]), &dy, dx);
                        }
                    }
                    Layer::AvgPool3x3 { x, .. } => {
                        if needs[*x] {
                            let s = plan.slots[*x];
                            let dx = grad_slot(be, &mut ws.pool, grads, *x, n * s.len());
                            be.avgpool3x3_backward(n, s.c, s.h, s.w, &dy, dx);
                        }
                    }
                    Layer::AvgPool2x2 { x, .. } => {
                        if needs[*x] {
                            let s = plan.slots[*x];
                            let dx = grad_slot(be, &mut ws.pool, grads, *x, n * s.len());
                            be.avgpool2x2_backward(n, s.c, s.h, s.w, &dy, dx);
                        }
                    }
                    Layer::GlobalAvgPool { x, .. } => {
                        if needs[*x] {
                            let s = plan.slots[*x];
                            let dx = grad_slot(be, &mut ws.pool, grads, *x, n * s.len());
                            be.global_avgpool_backward(n, s.c, s.hw(), &dy, dx);
                        }
                    }
                    Layer::Linear { x, y, w, b } => {
                        let (fin, fout) = (plan.slots[*x].len(), plan.slots[*y].len());
                        let dx = if needs[*x] {
                            Some(grad_slot(be, &mut ws.pool, grads, *x, n * fin))
                        } else {
                            None
                        };
                        match &mut param_grads {
                            ParamGrads::Batched => {
                                let all = batched.as_mut().expect("batched grads");
                                let (dw, db) = pair_mut(all, *w, *b);
                                be.linear_backward(
                                    n, fin, fout, &slots[*x], &p[*w], &dy, dx, dw, db,
                                );
                            }
                            ParamGrads::Skip | ParamGrads::PerSample(_) => {
                                if let Some(dx) = dx {
                                    let mut dw = be.alloc(fin * fout);
                                    let mut db = be.alloc(fout);
                                    be.linear_backward(
                                        n,
                                        fin,
                                        fout,
                                        &slots[*x],
                                        &p[*w],
                                        &dy,
                                        Some(dx),
                                        &mut dw,
                                        &mut db,
                                    );
                                }
                                if let ParamGrads::PerSample(visit) = &mut param_grads {
                                    let mut dw = std::mem::take(scratch(
                                        be,
                                        &mut ws.scratch,
                                        n * fin * fout,
                                        0,
                                    ));
                                    let db = scratch(be, &mut ws.scratch, n * fout, 1);
                                    be.linear_grad_per_sample(
                                        n, fin, fout, &slots[*x], &dy, &mut dw, db,
                                    );
                                    visit(*w, &dw);
                                    visit(*b, db);
                                    ws.scratch.insert(scratch_key(n * fin * fout, 0), dw);
                                }
                            }
                        }
                    }
                    Layer::Sum { xs, .. } => {
                        // Inputs with a gradient add dy; those without get a copy, except the
                        // last, which takes dy itself. Inputs may repeat (skip of a skip).
                        let targets: Vec<usize> =
                            xs.iter().copied().filter(|x| needs[*x]).collect();
                        let len = be.buf_len(&dy);
                        let mut dy = Some(dy);
                        for (k, x) in targets.iter().enumerate() {
                            let d = dy.as_ref().expect("dy kept until the last input");
                            if let Some(g) = grads[*x].as_mut() {
                                be.add_assign(g, d);
                            } else if k + 1 == targets.len() {
                                grads[*x] = dy.take();
                            } else {
                                let mut copy = take_pooled(be, &mut ws.pool, len);
                                be.copy(d, &mut copy);
                                grads[*x] = Some(copy);
                            }
                        }
                        if let Some(dy) = dy {
                            recycle(be, &mut ws.pool, dy);
                        }
                        continue;
                    }
                    Layer::Zero { .. } => {}
                }
                recycle(be, &mut ws.pool, dy);
            }
        }
        passes
    }

    /// Batched parameter gradients for each of `seeds` (`dlogits` of the last forward pass,
    /// as in [`Executor::backward`] with [`ParamGrads::Batched`]): `take(k, grads)` sees
    /// seed `k`'s, one buffer per plan parameter, in no particular order and from any
    /// thread. The passes run side by side, up to [`Backend::parallel_passes`] at a time,
    /// each lane with its own workspace taking its seeds in lockstep groups of
    /// [`Backend::lockstep_passes`] (`backward_lockstep`); each pass computes what it would
    /// alone.
    pub fn backward_each(
        &mut self,
        seeds: Vec<B::Buf>,
        options: &BackwardOptions,
        take: &(dyn Fn(usize, &[B::Buf]) + Sync),
    ) {
        let lanes = self.backend.parallel_passes().clamp(1, seeds.len().max(1));
        if self.workspaces.len() < lanes {
            self.workspaces.resize_with(lanes, Workspace::default);
        }
        // Seed k to lane k % lanes: the passes cost the same, so the lanes stay even.
        let mut queues: Vec<Vec<(usize, B::Buf)>> = (0..lanes).map(|_| Vec::new()).collect();
        for (k, seed) in seeds.into_iter().enumerate() {
            queues[k % lanes].push((k, seed));
        }
        let mut workspaces = std::mem::take(&mut self.workspaces);
        let this = &*self;
        let group = self.backend.lockstep_passes().max(1);
        let run_lane = |ws: &mut Workspace<B>, mut queue: Vec<(usize, B::Buf)>| {
            while !queue.is_empty() {
                let rest = queue.split_off(group.min(queue.len()));
                let (ks, seeds): (Vec<usize>, Vec<B::Buf>) = queue.into_iter().unzip();
                queue = rest;
                let passes = this.backward_lockstep(
                    ws,
                    seeds,
                    this.whole_network(),
                    options,
                    ParamGrads::Batched,
                    None,
                );
                for (k, pass) in ks.into_iter().zip(passes) {
                    let params = pass.batched.expect("batched gradients");
                    take(k, &params);
                    let left = pass.grads.into_iter().flatten();
                    for buf in params.into_iter().chain(left) {
                        recycle(this.backend, &mut ws.pool, buf);
                    }
                }
            }
        };
        if lanes == 1 {
            let queue = queues.pop().expect("one lane");
            run_lane(&mut workspaces[0], queue);
        } else {
            // One thread per lane, each the whole of its own rayon pool, so a lane's kernels
            // run on its own thread and never wait on tasks of another lane (on 2 cores the
            // shared pool measured the same; with many lanes the own pools keep them apart).
            std::thread::scope(|scope| {
                for (ws, queue) in workspaces[..lanes].iter_mut().zip(queues) {
                    let run_lane = &run_lane;
                    scope.spawn(move || {
                        match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
                            Ok(pool) => pool.install(|| run_lane(ws, queue)),
                            Err(_) => run_lane(ws, queue),
                        }
                    });
                }
            });
        }
        self.workspaces = workspaces;
    }

    /// Which slots a backward pass must carry a gradient into: those with a parameter or
    /// (when asked) the input upstream.
    /// The whole plan as a backward segment: from the logits down to the input.
    fn whole_network(&self) -> Segment {
        Segment {
            seed: self.plan.output,
            first_layer: 0,
        }
    }

    fn needs_grad(&self, input_grad: bool) -> Vec<bool> {
        let mut needs = vec![false; self.plan.slots.len()];
        needs[INPUT] = input_grad;
        for layer in &self.plan.layers {
            let has_params = matches!(
                layer,
                Layer::Conv { .. } | Layer::BatchNorm { .. } | Layer::Linear { .. }
            );
            needs[layer.output()] = has_params || layer.inputs().iter().any(|x| needs[*x]);
        }
        needs
    }
}

impl<B: Backend> Drop for Executor<'_, B> {
    /// Hands every buffer back to the backend for the next executor.
    fn drop(&mut self) {
        let be = self.backend;
        // The input was the caller's upload; parameters and activations are ours.
        let bufs = self
            .slots
            .drain(..)
            .chain(self.params.drain(..))
            .chain(self.bn_stats.drain(..).flatten().flat_map(|(m, v)| [m, v]))
            .chain(self.workspaces.drain(..).flat_map(Workspace::into_bufs));
        for buf in bufs {
            be.release(buf);
        }
    }
}

/// Where a backward pass starts and stops: the gradient is seeded at slot `seed` and
/// carried back through the layers from the last down to `first_layer`.
#[derive(Clone, Copy, Debug)]
struct Segment {
    seed: SlotId,
    first_layer: usize,
}

/// The buffers one backward pass reuses: gradient buffers of earlier passes by length
/// (reusing them avoids fresh allocations, and their page faults, for hundreds of slot
/// gradients per pass) and per-sample scratch.
struct Workspace<B: Backend> {
    scratch: HashMap<usize, B::Buf>,
    pool: HashMap<usize, Vec<B::Buf>>,
}

impl<B: Backend> Default for Workspace<B> {
    fn default() -> Self {
        Workspace {
            scratch: HashMap::new(),
            pool: HashMap::new(),
        }
    }
}

impl<B: Backend> Workspace<B> {
    fn into_bufs(self) -> impl Iterator<Item = B::Buf> {
        let scratch = self.scratch.into_values();
        scratch.chain(self.pool.into_values().flatten())
    }
}

/// What one backward pass holds: the gradient of each slot still to be propagated, and
/// its batched parameter gradients.
struct PassGrads<B: Backend> {
    grads: Vec<Option<B::Buf>>,
    batched: Option<Vec<B::Buf>>,
}

/// Images per batch-norm statistics group.
fn bn_group(bn: BnStatistics, n: usize) -> usize {
    match bn {
        BnStatistics::Batch | BnStatistics::Bypass => n,
        BnStatistics::PerSample => 1,
    }
}

/// The gradient buffer of a slot, zeroed on first use (from the pool when it has one).
fn grad_slot<'g, B: Backend>(
    be: &B,
    pool: &mut HashMap<usize, Vec<B::Buf>>,
    grads: &'g mut [Option<B::Buf>],
    slot: usize,
    len: usize,
) -> &'g mut B::Buf {
    let (buf, first) = grad_target(be, pool, grads, slot, len);
    if first {
        be.fill_zero(buf);
    }
    buf
}

/// The gradient buffer of a slot for an op that writes its first gradient itself (the
/// `_first` ops): its contents are arbitrary when the flag says it is the first.
fn grad_target<'g, B: Backend>(
    be: &B,
    pool: &mut HashMap<usize, Vec<B::Buf>>,
    grads: &'g mut [Option<B::Buf>],
    slot: usize,
    len: usize,
) -> (&'g mut B::Buf, bool) {
    let first = grads[slot].is_none();
    let buf = grads[slot].get_or_insert_with(|| take_pooled(be, pool, len));
    (buf, first)
}

/// A buffer of `len` elements from the pool (contents arbitrary), or a new one.
fn take_pooled<B: Backend>(be: &B, pool: &mut HashMap<usize, Vec<B::Buf>>, len: usize) -> B::Buf {
    pool.get_mut(&len)
        .and_then(Vec::pop)
        .unwrap_or_else(|| be.alloc(len))
}

/// Returns a spent gradient buffer to the pool.
fn recycle<B: Backend>(be: &B, pool: &mut HashMap<usize, Vec<B::Buf>>, buf: B::Buf) {
    pool.entry(be.buf_len(&buf)).or_default().push(buf);
}

fn scratch_key(len: usize, which: usize) -> usize {
    len * 2 + which
}

/// A reusable scratch buffer of `len` elements (`which` tells apart two of one length).
fn scratch<'s, B: Backend>(
    be: &B,
    pool: &'s mut HashMap<usize, B::Buf>,
    len: usize,
    which: usize,
) -> &'s mut B::Buf {
    let buf = pool.entry(scratch_key(len, which)).or_default();
    if be.buf_len(buf) != len {
        *buf = be.alloc(len);
    }
    buf
}

/// Two distinct elements of a slice, both mutable.
fn pair_mut<T>(items: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert_ne!(a, b);
    if a < b {
        let (lo, hi) = items.split_at_mut(b);
        (&mut lo[a], &mut hi[0])
    } else {
        let (lo, hi) = items.split_at_mut(a);
        (&mut hi[0], &mut lo[b])
    }
}

/// Rounds f64 host values to the backend's scalar.
pub fn to_real<T: Real>(values: &[f64]) -> Vec<T> {
    values.iter().map(|&v| T::from_f64_rounded(v)).collect()
}
