//! Isomorphism keys: which archs compute the same thing, at three levels of detail.

use std::collections::HashMap;

use super::{benchmark_archs, Arch, Op, EDGES, NODES};

/// The symbolic expressions of the four nodes, by the benchmark's rules (see [`iso_key`]).
fn node_expressions(arch: &Arch) -> [String; NODES] {
    let mut nodes: [String; NODES] = Default::default();
    nodes[0] = "0".to_string();
    for to in 1..NODES {
        let mut terms: Vec<String> = EDGES
            .iter()
            .zip(arch.ops)
            .filter(|((_, t), _)| *t == to)
            .map(|(&(from, _), op)| {
                let input = &nodes[from];
                // The benchmark's test: only a node whose whole expression is `#` counts as
                // zero, so a node summing several zero terms (`#+#`) still propagates.
                if op == Op::None || input == "#" {
                    "#".to_string()
                } else if op == Op::SkipConnect {
                    input.clone()
                } else {
                    format!("({input})@{op}")
                }
            })
            .collect();
        terms.sort_unstable();
        nodes[to] = terms.join("+");
    }
    nodes
}

/// The benchmark's isomorphism key (the `unique` column of its arch table): the output
/// node as a symbolic expression, `0` the input, `#` a zero, `(x)@op` an op applied to `x`,
/// sorted terms joined with `+`. Archs with equal keys compute the same function of the
/// input (up to their random weights); 6,466 classes.
pub fn iso_key(arch: &Arch) -> String {
    let [.., output] = node_expressions(arch);
    output
}

/// A finer key for scores that see the ReLU codes (NASWOT, linear regions): [`iso_key`]
/// followed by the sorted inputs `(x)` of every conv edge, one per ReLU module, zero inputs
/// included; 7,425 classes. A conv's own op does not enter: its ReLU comes before it, and
/// where its output matters the op is already in the expression that reads it (a node some
/// ReLU or the output sees). So two archs differing only in the kind of a conv whose output
/// reaches neither a ReLU nor the output have equal codes in distribution.
pub fn codes_key(arch: &Arch) -> String {
    key_with_convs(arch, |input, _| format!("({input})"))
}

/// The finest key, for counts of the cell's structure (params, FLOPs): [`iso_key`] followed
/// by the sorted `(input)@op` of every conv edge, zero-input and dead-end convs included;
/// 8,252 classes.
pub fn structure_key(arch: &Arch) -> String {
    key_with_convs(arch, |input, op| format!("({input})@{op}"))
}

/// The key for scores of every module's output (MeCo): [`iso_key`] followed by the sorted
/// `(input)@op` of every conv edge and of every pool or skip edge whose input is not `#`,
/// dead ends included; 11,185 classes. The cell's output is in the key, and every other
/// tensor a module outputs is an edge's (an op's, or the ReLU of a conv edge: functions
/// of the edge's input). A pool or skip of a zero outputs zeros and can be left out; a
/// zero-input conv stays, so that this key refines [`structure_key`] and one key serves a
/// run of several scores.
pub fn modules_key(arch: &Arch) -> String {
    key_with_edges(
        arch,
        |input, op| op.is_conv() || (op != Op::None && input != "#"),
        |input, op| format!("({input})@{op}"),
    )
}

/// [`iso_key`], `;`, then the sorted `term(input expression, op)` of every conv edge.
fn key_with_convs(arch: &Arch, term: impl Fn(&str, Op) -> String) -> String {
    key_with_edges(arch, |_, op| op.is_conv(), term)
}

/// [`iso_key`], `;`, then the sorted `term(input expression, op)` of every edge `keep`s.
fn key_with_edges(
    arch: &Arch,
    keep: impl Fn(&str, Op) -> bool,
    term: impl Fn(&str, Op) -> String,
) -> String {
    let nodes = node_expressions(arch);
    let mut terms: Vec<String> = EDGES
        .iter()
        .zip(arch.ops)
        .filter(|(&(from, _), op)| keep(&nodes[from], *op))
        .map(|(&(from, _), op)| term(&nodes[from], op))
        .collect();
    terms.sort_unstable();
    format!("{};{}", nodes[NODES - 1], terms.join(","))
}

/// Which of the keys above a set of scores needs, coarsest first: archs with equal keys
/// have equal scores (in distribution over the initialisation, nb201.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClassKey {
    /// [`iso_key`]: scores of the function from input to output.
    Function,
    /// [`codes_key`]: scores that see every ReLU's input.
    Codes,
    /// [`structure_key`]: counts over every conv edge.
    Structure,
    /// [`modules_key`]: scores of every module's output.
    Modules,
}

impl ClassKey {
    pub fn of(self, arch: &Arch) -> String {
        match self {
            ClassKey::Function => iso_key(arch),
            ClassKey::Codes => codes_key(arch),
            ClassKey::Structure => structure_key(arch),
            ClassKey::Modules => modules_key(arch),
        }
    }
}

/// Whether the output is zero whatever the input: no path of non-`none` edges from the
/// input to the output (341 archs). Exact, unlike the `#` marks of [`iso_key`].
pub fn is_dead(arch: &Arch) -> bool {
    let mut live = [false; NODES];
    live[0] = true;
    for (&(from, to), op) in EDGES.iter().zip(arch.ops) {
        live[to] |= live[from] && op != Op::None;
    }
    !live[NODES - 1]
}

/// Benchmark indices sharing one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchClass {
    pub key: String,
    /// Ascending benchmark indices.
    pub indices: Vec<usize>,
}

/// All benchmark archs grouped by [`iso_key`], classes ordered by their first index.
pub fn iso_classes() -> Vec<ArchClass> {
    classes_by(iso_key)
}

/// All benchmark archs grouped by [`codes_key`], classes ordered by their first index.
pub fn codes_classes() -> Vec<ArchClass> {
    classes_by(codes_key)
}

/// All benchmark archs grouped by [`structure_key`], classes ordered by their first index.
pub fn structure_classes() -> Vec<ArchClass> {
    classes_by(structure_key)
}

/// All benchmark archs grouped by [`modules_key`], classes ordered by their first index.
pub fn modules_classes() -> Vec<ArchClass> {
    classes_by(modules_key)
}

fn classes_by(key_of: fn(&Arch) -> String) -> Vec<ArchClass> {
    let mut position: HashMap<String, usize> = HashMap::new();
    let mut classes: Vec<ArchClass> = Vec::new();
    for (index, arch) in benchmark_archs() {
        let key = key_of(&arch);
        match position.get(&key) {
            Some(&at) => classes[at].indices.push(index),
            None => {
                position.insert(key.clone(), classes.len());
                classes.push(ArchClass {
                    key,
                    indices: vec![index],
                });
            }
        }
    }
    classes
}
