//! Search strategies: the algorithms on synthetic fitness functions, and `nasrank search`
//! end to end on a tiny network.

use nasrank::data::SplitMix64;
use nasrank::search::evolution::{
    mutate, mutate_width, regularized_evolution, Evolution, EvolutionSettings,
};
use nasrank::search::prune::{dense_ranks, prune_round, prune_search, relative_change_thousandths};
use nasrank::search::random::{mean_std, random_search};
use nasrank::search::topk::{pick_by_accuracy, top_k, topk_search};
use nasrank::search::{best_position, random_size_arch, sample_without_replacement, SearchArch};
use nasrank::space::{
    arch_of_index, index_of_arch, Arch, Cell, Op, OpSet, SizeArch, EDGES, NUM_ARCHS,
};
use std::collections::HashSet;
mod common;

use common::{nasrank, stderr};
use std::process::Output;

/// A fixed, scrambled function of the index: no structure the sampler could follow.
fn scrambled(index: usize) -> f64 {
    ((index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as f64
}

// ---------------------------------------------------------------- random

#[test]
fn random_search_keeps_the_best_of_its_sample_in_either_direction() {
    let pool: Vec<usize> = (0..NUM_ARCHS).collect();
    for higher in [true, false] {
        let run = random_search(&pool, 50, 11, higher, scrambled);
        assert_eq!(run.sample.len(), 50);
        let values: Vec<f64> = run.sample.iter().map(|s| s.1).collect();
        let want = if higher {
            values.iter().cloned().fold(f64::MIN, f64::max)
        } else {
            values.iter().cloned().fold(f64::MAX, f64::min)
        };
        assert_eq!(run.chosen().1, want);
        assert_eq!(run.chosen().1, scrambled(run.chosen().0));
    }
}

#[test]
fn a_nan_score_never_wins_and_ties_go_to_the_first() {
    assert_eq!(best_position(&[f64::NAN, 1.0, 3.0, 3.0], true), Some(2));
    assert_eq!(best_position(&[f64::NAN, 1.0, 3.0, 1.0], false), Some(1));
    assert_eq!(best_position(&[f64::NAN], true), Some(0));
    assert_eq!(best_position(&[], true), None);
}

#[test]
fn sampling_is_deterministic_in_the_seed_and_without_replacement() {
    let pool: Vec<usize> = (0..NUM_ARCHS).collect();
    let a = random_search(&pool, 300, 5, true, scrambled);
    let b = random_search(&pool, 300, 5, true, scrambled);
    let c = random_search(&pool, 300, 6, true, scrambled);
    assert_eq!(a, b);
    assert_ne!(a.sample, c.sample);
    let distinct: HashSet<usize> = a.sample.iter().map(|s| s.0).collect();
    assert_eq!(distinct.len(), 300);
    // Drawing the whole pool is a permutation of it.
    let mut all = sample_without_replacement(40, 40, &mut SplitMix64::new(3));
    all.sort_unstable();
    assert_eq!(all, (0..40).collect::<Vec<_>>());
}

#[test]
fn sampling_is_roughly_uniform() {
    // 2,000 draws of 5 from 10: each item expected 1,000 times.
    let mut counts = [0usize; 10];
    let mut rng = SplitMix64::new(9);
    for _ in 0..2000 {
        for i in sample_without_replacement(10, 5, &mut rng) {
            counts[i] += 1;
        }
    }
    assert!(
        counts.iter().all(|&c| (880..1120).contains(&c)),
        "{counts:?}"
    );
}

#[test]
fn a_pool_restricts_the_sample() {
    let pool = [3, 17, 99, 1234, 15_000];
    let run = random_search(&pool, 4, 1, true, scrambled);
    assert!(run.sample.iter().all(|s| pool.contains(&s.0)));
    let full = random_search(&pool, 5, 1, true, scrambled);
    let best = pool
        .iter()
        .copied()
        .max_by(|&a, &b| scrambled(a).total_cmp(&scrambled(b)))
        .unwrap();
    assert_eq!(full.chosen().0, best);
}

#[test]
fn mean_and_population_std() {
    assert_eq!(mean_std(&[90.0, 92.0]), (91.0, 1.0));
    let (m, s) = mean_std(&[]);
    assert!(m.is_nan() && s.is_nan());
}

// ---------------------------------------------------------------- evolution

#[test]
fn mutation_changes_exactly_one_edge_to_another_op() {
    let mut rng = SplitMix64::new(4);
    let mut edges_hit = [0usize; 6];
    let mut ops_hit = [0usize; 5];
    for i in 0..3000 {
        let parent = arch_of_index(i % NUM_ARCHS).unwrap();
        let child = mutate(&parent, &mut rng);
        let changed: Vec<usize> = (0..6).filter(|&e| parent.ops[e] != child.ops[e]).collect();
        assert_eq!(changed.len(), 1, "{parent:?} -> {child:?}");
        edges_hit[changed[0]] += 1;
        ops_hit[child.ops[changed[0]].index()] += 1;
    }
    // Every edge and every op (none included) is reachable.
    assert!(edges_hit.iter().all(|&n| n > 350), "{edges_hit:?}");
    assert!(ops_hit.iter().all(|&n| n > 350), "{ops_hit:?}");
}

#[test]
fn aging_removes_the_oldest_even_when_it_is_the_fittest() {
    let settings = EvolutionSettings {
        population: 5,
        sample: 3,
        cycles: 100,
    };
    let mut evo = Evolution::new(settings, true, 7);
    // The first arch evaluated is by far the fittest; later ones get small values.
    let mut calls = 0;
    let mut fitness = |_: &Arch| {
        calls += 1;
        if calls == 1 {
            1e9
        } else {
            calls as f64
        }
    };
    for _ in 0..5 {
        evo.step(&mut fitness);
    }
    assert_eq!(evo.population.len(), 5);
    let before: Vec<_> = evo.population.iter().copied().collect();
    assert_eq!(before[0].fitness, 1e9);
    let child = evo.step(&mut fitness);
    assert_eq!(evo.population.len(), 5);
    let after: Vec<_> = evo.population.iter().copied().collect();
    assert_eq!(
        &after[..4],
        &before[1..],
        "the oldest left, the rest kept order"
    );
    assert_eq!(after[4], child);
    assert_eq!(evo.history.len(), 6);
    // The best of the history is still the aged-out member.
    assert_eq!(evo.best().unwrap().fitness, 1e9);
}

#[test]
fn evolution_finds_a_unique_optimum_and_is_deterministic() {
    let target = arch_of_index(6111).unwrap();
    // Edges matching the target: a unique maximum of 6 at the target.
    let fitness = |a: &Arch| (0..6).filter(|&e| a.ops[e] == target.ops[e]).count() as f64;
    let settings = EvolutionSettings {
        population: 20,
        sample: 5,
        cycles: 600,
    };
    let evo = regularized_evolution(settings, true, 42, fitness);
    assert_eq!(evo.history.len(), 600);
    assert_eq!(evo.best().unwrap().arch, target);
    let again = regularized_evolution(settings, true, 42, fitness);
    assert_eq!(evo.history, again.history);
    // Lower is better: the same search finds an arch sharing no edge with the target.
    let low = regularized_evolution(settings, false, 42, fitness);
    assert_eq!(low.best().unwrap().fitness, 0.0);
}

// ---------------------------------------------------------------- topk

#[test]
fn top_k_keeps_the_k_best_in_order_and_ties_in_draw_order() {
    let scored = [
        (10, 1.0),
        (11, 5.0),
        (12, 3.0),
        (13, 5.0),
        (14, f64::NAN),
        (15, 4.0),
    ];
    assert_eq!(
        top_k(&scored, 3, true),
        vec![(11, 5.0), (13, 5.0), (15, 4.0)]
    );
    let low = top_k(&scored, 2, false);
    assert_eq!(low, vec![(10, 1.0), (12, 3.0)]);
}

#[test]
fn topk_search_keeps_the_k_best_of_its_sample_and_picks_by_accuracy() {
    let pool: Vec<usize> = (0..NUM_ARCHS).collect();
    let result = topk_search(&pool, 300, 40, 3, true, scrambled);
    assert_eq!(result.sample.len(), 300);
    assert_eq!(result.kept.len(), 40);
    let mut values: Vec<f64> = result.sample.iter().map(|s| s.1).collect();
    values.sort_by(|a, b| b.total_cmp(a));
    let kept_values: Vec<f64> = result.kept.iter().map(|s| s.1).collect();
    assert_eq!(kept_values, values[..40]);
    // An accuracy unrelated to the score: the pick is the most accurate of the kept,
    // not of the whole sample.
    let accuracy = |i: usize| Some((i % 97) as f64);
    let (pick, acc) = pick_by_accuracy(&result.kept, accuracy).unwrap();
    let best_kept = result
        .kept
        .iter()
        .map(|s| (s.0 % 97) as f64)
        .fold(f64::MIN, f64::max);
    assert_eq!(acc, best_kept);
    assert!(result.kept.iter().any(|s| s.0 == pick));
    let best_sample = result
        .sample
        .iter()
        .map(|s| (s.0 % 97) as f64)
        .fold(f64::MIN, f64::max);
    assert!(best_sample >= best_kept);
}

#[test]
fn the_pick_passes_over_archs_without_an_accuracy() {
    let kept = [(1, 9.0), (2, 8.0), (3, 7.0)];
    let table = |i: usize| match i {
        1 => None,
        2 => Some(80.0),
        3 => Some(85.0),
        _ => unreachable!(),
    };
    assert_eq!(pick_by_accuracy(&kept, table), Some((3, 85.0)));
    assert_eq!(pick_by_accuracy(&kept, |_| None), None);
    assert_eq!(pick_by_accuracy(&kept, |_| Some(f64::NAN)), None);
}

// ---------------------------------------------------------------- prune

#[test]
fn relative_changes_round_to_thousandths() {
    assert_eq!(relative_change_thousandths(10.0, 9.0), Some(100));
    assert_eq!(relative_change_thousandths(3.0, 2.0), Some(333));
    assert_eq!(relative_change_thousandths(1.0, 1.0004), Some(0));
    assert_eq!(relative_change_thousandths(1.0, 1.0006), Some(-1));
    assert_eq!(relative_change_thousandths(f64::NAN, 1.0), None);
    assert_eq!(relative_change_thousandths(f64::INFINITY, 1.0), None);
    assert_eq!(relative_change_thousandths(1.0, f64::INFINITY), None);
}

#[test]
fn dense_ranks_share_ties_and_put_non_finite_last() {
    let keys = [Some(5), Some(3), Some(5), None, Some(1)];
    assert_eq!(dense_ranks(&keys, true), vec![0, 1, 0, 3, 2]);
    assert_eq!(dense_ranks(&keys, false), vec![2, 1, 2, 3, 0]);
    assert_eq!(dense_ranks(&[None, None], true), vec![0, 0]);
}

/// A measurement equal to 1 on `base` and `1 - change(o)` for `base` without op `o`.
fn with_changes<'a>(
    base: Cell,
    change: &'a dyn Fn(usize, Op, usize) -> f64,
) -> impl FnMut(&Cell, usize) -> f64 + 'a {
    move |cell: &Cell, repeat: usize| {
        let mut value = 1.0;
        for e in 0..6 {
            for op in base.edges[e].iter() {
                if !cell.edges[e].contains(op) {
                    value -= change(e, op, repeat);
                }
            }
        }
        value
    }
}

#[test]
fn a_round_prunes_the_smallest_rank_sum_per_edge() {
    use Op::*;
    let mut cell = Cell::from(arch_of_index(0).unwrap());
    cell.edges[0] = OpSet::from_ops(&[SkipConnect, Conv1x1, Conv3x3]);
    cell.edges[1] = OpSet::from_ops(&[Conv3x3, AvgPool3x3]);
    let kappa_change = |e: usize, op: Op, _: usize| match (e, op) {
        (0, SkipConnect) => 0.5,
        (0, Conv1x1) | (0, Conv3x3) => 0.2,
        (1, Conv3x3) => 0.1,
        (1, AvgPool3x3) => -0.3,
        _ => panic!("edge {e} has one op: never a candidate"),
    };
    let regions_change = |e: usize, op: Op, _: usize| match (e, op) {
        (0, SkipConnect) => 0.4,
        (0, Conv1x1) => 0.1,
        (0, Conv3x3) | (1, Conv3x3) => 0.0,
        (1, AvgPool3x3) => -0.1,
        _ => panic!("edge {e} has one op: never a candidate"),
    };
    let round = prune_round(
        &cell,
        1,
        &mut with_changes(cell, &kappa_change),
        &mut with_changes(cell, &regions_change),
    );
    let ranks: Vec<(usize, Op, usize, usize)> = round
        .candidates
        .iter()
        .map(|c| (c.edge, c.op, c.kappa_rank, c.regions_rank))
        .collect();
    // Dense ranks over all candidates together: the tie at 0.2 shares rank 1, then 2.
    assert_eq!(
        ranks,
        vec![
            (0, SkipConnect, 0, 3),
            (0, Conv1x1, 1, 2),
            (0, Conv3x3, 1, 1),
            (1, Conv3x3, 2, 1),
            (1, AvgPool3x3, 3, 0),
        ]
    );
    // Edge 0: conv3x3 (sum 2), though kappa alone would prune skip. Edge 1: both sum to 3,
    // the smaller kappa rank (conv3x3) goes.
    assert_eq!(round.pruned, vec![(0, Conv3x3), (1, Conv3x3)]);
    assert_eq!(round.candidates[0].kappa_change, 0.5);
    assert_eq!(round.candidates[4].regions_change, -0.1);
}

#[test]
fn changes_are_rounded_per_repeat_then_averaged() {
    use Op::*;
    let mut cell = Cell::from(arch_of_index(0).unwrap());
    cell.edges[2] = OpSet::from_ops(&[SkipConnect, AvgPool3x3]);
    // Repeat 0 alone would prune skip (0.3 > 0.0); the mean over both prunes pool
    // (0.1 < 0.2). The 0.0004 rounds away, so the R changes tie.
    let kappa_change = |_: usize, op: Op, r: usize| match (op, r) {
        (SkipConnect, 0) => 0.3,
        (SkipConnect, _) => -0.1,
        (_, 0) => 0.0,
        _ => 0.4,
    };
    let regions_change = |_: usize, op: Op, _: usize| if op == SkipConnect { 0.0004 } else { 0.0 };
    let round = prune_round(
        &cell,
        2,
        &mut with_changes(cell, &kappa_change),
        &mut with_changes(cell, &regions_change),
    );
    assert_eq!(round.pruned, vec![(2, AvgPool3x3)]);
    assert!((round.candidates[0].kappa_change - 0.1).abs() < 1e-12);
    assert!((round.candidates[1].kappa_change - 0.2).abs() < 1e-12);
    assert_eq!(
        round.candidates[0].regions_rank,
        round.candidates[1].regions_rank
    );
}

#[test]
fn pruning_the_supernet_takes_three_rounds_to_one_op_per_edge() {
    // Additive measurements: op k (0..4 among the non-none ops) on edge e weighs
    // 100 * (1 + (k + e) % 4); removing a heavy op lowers kappa most (pruned first by
    // kappa) and, with R weighted by 500 minus the same, raises R (pruned first by R).
    let ops = [Op::SkipConnect, Op::Conv1x1, Op::Conv3x3, Op::AvgPool3x3];
    let weight = |e: usize, op: Op| {
        let k = ops.iter().position(|&o| o == op).unwrap();
        100.0 * (1 + (k + e) % 4) as f64
    };
    let total = |cell: &Cell, f: &dyn Fn(usize, Op) -> f64| {
        (0..6)
            .flat_map(|e| cell.edges[e].iter().map(move |op| (e, op)))
            .map(|(e, op)| f(e, op))
            .sum::<f64>()
    };
    let kappa = |cell: &Cell, _: usize| 1000.0 + total(cell, &weight);
    let regions = |cell: &Cell, _: usize| 1000.0 + total(cell, &|e, op| 500.0 - weight(e, op));
    let (cell, rounds) = prune_search(Cell::full_supernet(), 2, kappa, regions);
    assert_eq!(rounds.len(), 3);
    for (r, round) in rounds.iter().enumerate() {
        assert_eq!(round.pruned.len(), 6, "round {r}");
        for &(e, op) in &round.pruned {
            // Round r prunes the op of weight 400, 300, 200 in turn.
            assert_eq!(weight(e, op), 100.0 * (4 - r) as f64, "round {r} edge {e}");
        }
    }
    assert_eq!(rounds[0].candidates.len(), 24);
    assert_eq!(rounds[1].candidates.len(), 18);
    assert_eq!(rounds[2].candidates.len(), 12);
    let arch = cell.as_arch().expect("one op per edge");
    for e in 0..6 {
        assert_eq!(weight(e, arch.ops[e]), 100.0, "edge {e}");
    }
}

// ---------------------------------------------------------------- size space (SSS)

/// The size space's widths and size, as shared/spec/nats_sss.md A1 gives them (not the
/// engine's constants).
const WIDTHS: [usize; 8] = [8, 16, 24, 32, 40, 48, 56, 64];
const SSS_ARCHS: usize = 32_768;

/// The benchmark's params of an SSS network, spec A4's closed form (K classes).
fn spec_params(w: [usize; 5], k: usize) -> f64 {
    let ne = |a: usize, b: usize| usize::from(a != b);
    let cell =
        |a: usize, b: usize| 18 * a * b + 27 * b * b + ne(a, b) * a * b + 10 * b + ne(a, b) * 2 * b;
    let res = |a: usize, b: usize| 10 * a * b + 9 * b * b + 4 * b;
    let [c1, c2, c3, c4, c5] = w;
    (27 * c1
        + 2 * c1
        + cell(c1, c1)
        + res(c1, c2)
        + cell(c2, c3)
        + res(c3, c4)
        + cell(c4, c5)
        + 2 * c5
        + (c5 + 1) * k) as f64
}

/// The widths at an SSS index, spec A1's order (first position most significant).
fn spec_widths(index: usize) -> [usize; 5] {
    let mut w = [0; 5];
    for (k, slot) in w.iter_mut().enumerate() {
        *slot = WIDTHS[(index >> (3 * (4 - k))) & 7];
    }
    w
}

fn sss_params(index: usize) -> f64 {
    spec_params(spec_widths(index), 10)
}

#[test]
fn the_spec_params_fitness_matches_the_spec_anchors() {
    // Spec A5 (CIFAR-10): the oracle the size-space searches below climb.
    assert_eq!(sss_params(0), 11_714.0);
    assert_eq!(sss_params(11), 49_202.0);
    assert_eq!(sss_params(284), 144_834.0);
    assert_eq!(sss_params(32_767), 713_674.0);
}

#[test]
fn width_mutation_changes_exactly_one_position_to_another_allowed_width() {
    let mut rng = SplitMix64::new(12);
    let mut positions_hit = [0usize; 5];
    let mut moves = std::collections::HashMap::new();
    let draws = 20_000;
    for i in 0..draws {
        let parent = SizeArch::from_index((i * 7) % SSS_ARCHS).unwrap();
        let child = mutate_width(&parent, &mut rng);
        let (p, c) = (parent.widths(), child.widths());
        let changed: Vec<usize> = (0..5).filter(|&k| p[k] != c[k]).collect();
        assert_eq!(changed.len(), 1, "{parent} -> {child}");
        let k = changed[0];
        assert!(WIDTHS.contains(&c[k]), "{parent} -> {child}");
        positions_hit[k] += 1;
        *moves.entry((p[k], c[k])).or_insert(0usize) += 1;
    }
    // Positions uniform: 4,000 expected each (sd 57).
    assert!(
        positions_hit.iter().all(|&n| (3_700..4_300).contains(&n)),
        "{positions_hit:?}"
    );
    // From each width, each of the 7 others reached.
    assert_eq!(moves.len(), 8 * 7, "{moves:?}");
    // The trait's mutation of a size arch is the width mutation.
    let a = SizeArch::from_index(1234).unwrap();
    let (mut r1, mut r2) = (SplitMix64::new(3), SplitMix64::new(3));
    for _ in 0..50 {
        assert_eq!(a.mutate(&mut r1), mutate_width(&a, &mut r2));
    }
}

#[test]
fn random_size_archs_cover_every_width_at_every_position_uniformly() {
    let mut rng = SplitMix64::new(21);
    let mut counts = [[0usize; 8]; 5];
    for _ in 0..8_000 {
        let arch = random_size_arch(&mut rng);
        for (k, w) in arch.widths().into_iter().enumerate() {
            counts[k][WIDTHS.iter().position(|&x| x == w).unwrap()] += 1;
        }
    }
    // 1,000 expected per cell (sd 30).
    for row in counts {
        assert!(row.iter().all(|&n| (850..1_150).contains(&n)), "{counts:?}");
    }
}

#[test]
fn random_search_over_the_size_space_finds_the_known_best() {
    let pool: Vec<usize> = (0..SSS_ARCHS).collect();
    // Sampling the whole space: the largest network by params is 64:64:64:64:64 (index
    // 32767) and the smallest 8:8:8:8:8 (index 0), spec A5.
    let all = random_search(&pool, SSS_ARCHS, 3, true, sss_params);
    assert_eq!(all.chosen().0, 32_767);
    let all = random_search(&pool, SSS_ARCHS, 3, false, sss_params);
    assert_eq!(all.chosen().0, 0);
    // A sample: the best of what was drawn, the draws distinct indices of the space.
    let run = random_search(&pool, 500, 8, true, sss_params);
    let distinct: HashSet<usize> = run.sample.iter().map(|s| s.0).collect();
    assert_eq!(distinct.len(), 500);
    assert!(distinct.iter().all(|&i| i < SSS_ARCHS));
    let best = distinct
        .iter()
        .copied()
        .max_by(|&a, &b| sss_params(a).total_cmp(&sss_params(b)))
        .unwrap();
    assert_eq!(run.chosen(), (best, sss_params(best)));
}

#[test]
fn evolution_on_the_size_space_climbs_to_the_widest_arch() {
    let settings = EvolutionSettings {
        population: 20,
        sample: 5,
        cycles: 2_000,
    };
    let fitness = |a: &SizeArch| spec_params(a.widths(), 10);
    for seed in 0..4 {
        let evo = regularized_evolution(settings, true, seed, fitness);
        let first_population = evo.history[..20]
            .iter()
            .map(|m| m.fitness)
            .fold(f64::MIN, f64::max);
        let best = evo.best().unwrap();
        assert!(
            best.fitness > first_population,
            "seed {seed}: no improvement"
        );
        // Params rise strictly with every width (spec A5): one optimum, every width 64.
        assert_eq!(best.arch.widths(), [64; 5], "seed {seed}: {}", best.arch);
        assert_eq!(best.arch.to_string(), "64:64:64:64:64");
        // Deterministic in the seed.
        let again = regularized_evolution(settings, true, seed, fitness);
        assert_eq!(evo.history, again.history);
    }
    // Minimising climbs down to the narrowest arch just as well.
    let evo = regularized_evolution(
        EvolutionSettings {
            population: 20,
            sample: 5,
            cycles: 2_000,
        },
        false,
        1,
        fitness,
    );
    assert_eq!(evo.best().unwrap().arch.to_string(), "8:8:8:8:8");
}

#[test]
fn size_space_evolution_children_are_width_mutations_of_the_population() {
    let settings = EvolutionSettings {
        population: 6,
        sample: 2,
        cycles: 200,
    };
    let mut evo: Evolution<SizeArch> = Evolution::new(settings, true, 17);
    let mut fitness = |a: &SizeArch| sss_params(a.index());
    while !evo.done() {
        let before: Vec<SizeArch> = evo.population.iter().map(|m| m.arch).collect();
        let full = before.len() == settings.population;
        let child = evo.step(&mut fitness).arch;
        if full {
            // A child is one width away from a member of the population it was bred from.
            let one_away = before.iter().any(|p| {
                let (a, b) = (p.widths(), child.widths());
                (0..5).filter(|&k| a[k] != b[k]).count() == 1
            });
            assert!(one_away, "{child} is not one width from {before:?}");
        }
    }
}

// ---------------------------------------------------------------- CLI

fn json_of(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).expect("one JSON object")
}

/// The (index, value) of the highest NASWOT that `score` gives `archs` one by one, on
/// the tests' tiny network (TINY).
fn naswot_argmax(archs: &str) -> (usize, f64) {
    let mut args = vec![
        "score",
        "--archs",
        archs,
        "--scores",
        "naswot",
        "--no-dedup",
        "--quiet",
    ];
    args.extend(TINY);
    let scores = nasrank(&args);
    assert!(scores.status.success(), "{}", stderr(&scores));
    String::from_utf8_lossy(&scores.stdout)
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse::<usize>().unwrap(), f[3].parse::<f64>().unwrap())
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
}

/// A temp dir (one per test) holding `truth.csv` (every arch, accuracy = index / 1000, so any chosen
/// arch's accuracy is known) and `pool.csv` (six archs with an `index` column).
fn fixtures(test: &str) -> std::path::PathBuf {
    // One directory per test: tests run in parallel and must not read a half-written file.
    let dir = std::env::temp_dir().join(format!("nasrank-search-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut truth = String::from("index,arch,cifar10_test\n");
    for i in 0..NUM_ARCHS {
        truth += &format!("{i},{},{}\n", arch_of_index(i).unwrap(), i as f64 / 1000.0);
    }
    std::fs::write(dir.join("truth.csv"), truth).unwrap();
    std::fs::write(
        dir.join("pool.csv"),
        "index,cifar10_test\n1,0\n6111,0\n123,0\n9,0\n5000,0\n777,0\n",
    )
    .unwrap();
    dir
}

const TINY: [&str; 6] = ["--channels", "2", "--cells", "1", "--batch", "4"];

#[test]
fn cli_random_picks_the_best_score_of_the_pool_and_reports_accuracies() {
    let dir = fixtures("random");
    let (truth, pool) = (dir.join("truth.csv"), dir.join("pool.csv"));
    let mut args = vec![
        "search", "random", "-n", "6", "--runs", "2", "--quiet", "--json",
    ];
    args.extend(TINY);
    args.extend([
        "--from",
        pool.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
    ]);
    let v = json_of(&nasrank(&args));
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    // The pool's 6 archs, each scored once although both runs draw all of them.
    assert_eq!(v["scored"], 6);
    // Sampling the whole pool, both runs choose its NASWOT argmax, as `score` sees it.
    let best = naswot_argmax("1,6111,123,9,5000,777");
    for run in runs {
        assert_eq!(run["index"], best.0);
        assert_eq!(run["score"].as_f64().unwrap(), best.1);
        assert_eq!(run["accuracy"].as_f64().unwrap(), best.0 as f64 / 1000.0);
    }
    assert_eq!(v["mean_accuracy"].as_f64().unwrap(), best.0 as f64 / 1000.0);
    assert_eq!(v["std_accuracy"].as_f64().unwrap(), 0.0);

    // The text form names the chosen arch's index and accuracy.
    let mut args = vec!["search", "random", "-n", "6", "--quiet"];
    args.extend(TINY);
    args.extend([
        "--from",
        pool.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
    ]);
    let out = nasrank(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text.lines().find(|l| l.starts_with("1 ")).expect(&text);
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(fields[1], best.0.to_string(), "{text}");
    assert_eq!(
        fields[3],
        format!("{:.2}", best.0 as f64 / 1000.0),
        "{text}"
    );
}

#[test]
fn cli_topk_picks_by_accuracy_among_the_kept_or_lists_them_without_truth() {
    let dir = fixtures("topk");
    let (truth, pool) = (dir.join("truth.csv"), dir.join("pool.csv"));
    let mut args = vec!["search", "topk", "-n", "6", "--k", "3", "--quiet", "--json"];
    args.extend(TINY);
    args.extend([
        "--from",
        pool.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
    ]);
    let v = json_of(&nasrank(&args));
    assert_eq!(v["score"], "mgm");
    let kept = v["kept"].as_array().unwrap();
    assert_eq!(kept.len(), 3);
    let scores: Vec<f64> = kept.iter().map(|k| k["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let best_kept = kept
        .iter()
        .map(|k| k["index"].as_u64().unwrap())
        .max()
        .unwrap();
    assert_eq!(v["pick"]["index"], best_kept);
    assert_eq!(
        v["pick"]["accuracy"].as_f64().unwrap(),
        best_kept as f64 / 1000.0
    );

    let mut args = vec!["search", "topk", "-n", "6", "--k", "3", "--quiet"];
    args.extend(TINY);
    args.extend(["--from", pool.to_str().unwrap()]);
    let out = nasrank(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no --truth"), "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with(['1', '2', '3']))
            .count(),
        3,
        "{text}"
    );
}

#[test]
fn cli_evolution_reports_the_best_arch_with_its_accuracy() {
    let dir = fixtures("evolution");
    let truth = dir.join("truth.csv");
    let mut args = vec![
        "search",
        "evolution",
        "--population",
        "3",
        "--tournament",
        "2",
        "--cycles",
        "6",
        "--quiet",
        "--json",
        "--truth",
        truth.to_str().unwrap(),
    ];
    args.extend(TINY);
    let v = json_of(&nasrank(&args));
    let index = v["best"]["index"].as_u64().unwrap() as usize;
    assert_eq!(v["best"]["arch"], arch_of_index(index).unwrap().to_string());
    assert_eq!(
        v["best"]["accuracy"].as_f64().unwrap(),
        index as f64 / 1000.0
    );
    assert!(v["scored"].as_u64().unwrap() <= 6);
}

#[test]
fn cli_prune_ends_with_one_op_per_edge() {
    let dir = fixtures("prune");
    let truth = dir.join("truth.csv");
    let v = json_of(&nasrank(&[
        "search",
        "prune",
        "--channels",
        "1",
        "--cells",
        "1",
        "--batch",
        "4",
        "--repeats",
        "1",
        "--lr-batches",
        "1",
        "--lr-batch-size",
        "16",
        "--quiet",
        "--json",
        "--truth",
        truth.to_str().unwrap(),
    ]));
    let rounds = v["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3);
    for (r, round) in rounds.iter().enumerate() {
        assert_eq!(round["pruned"].as_array().unwrap().len(), 6);
        assert_eq!(round["candidates"].as_array().unwrap().len(), 6 * (4 - r));
    }
    let arch: Arch = v["arch"].as_str().unwrap().parse().unwrap();
    assert!(arch.ops.iter().all(|&op| op != Op::None), "{arch:?}");
    let index = v["index"].as_u64().unwrap() as usize;
    assert_eq!(index_of_arch(&arch), index);
    assert_eq!(v["accuracy"].as_f64().unwrap(), index as f64 / 1000.0);
    check_pruning_order(rounds, &arch);
}

/// The pruning order the report shows is TE-NAS's rule applied to the changes it shows:
/// dense ranks of the kappa changes (descending) and the region changes (ascending), a
/// non-finite change (null) ranked last; on each edge the candidate with the smallest rank
/// sum is pruned, ties to the smaller kappa rank, then to the first listed; the final arch
/// keeps on each edge the one op never pruned. Catches pruning the best candidate instead
/// of the worst, ranks in the wrong direction, or a report out of step with the search.
fn check_pruning_order(rounds: &[serde_json::Value], arch: &Arch) {
    let dense = |values: &[Option<f64>], descending: bool| -> Vec<usize> {
        let mut distinct: Vec<f64> = values.iter().flatten().copied().collect();
        distinct.sort_by(|a, b| {
            if descending {
                b.total_cmp(a)
            } else {
                a.total_cmp(b)
            }
        });
        distinct.dedup();
        values
            .iter()
            .map(|v| match v {
                Some(x) => distinct.iter().position(|d| d == x).unwrap(),
                None => distinct.len(),
            })
            .collect()
    };
    let mut removed: Vec<(String, String)> = Vec::new();
    for round in rounds {
        let candidates = round["candidates"].as_array().unwrap();
        let kappa: Vec<Option<f64>> = candidates
            .iter()
            .map(|c| c["kappa_change"].as_f64())
            .collect();
        let regions: Vec<Option<f64>> = candidates
            .iter()
            .map(|c| c["regions_change"].as_f64())
            .collect();
        let (kr, rr) = (dense(&kappa, true), dense(&regions, false));
        for (i, c) in candidates.iter().enumerate() {
            assert_eq!(c["kappa_rank"].as_u64().unwrap() as usize, kr[i], "{c}");
            assert_eq!(c["regions_rank"].as_u64().unwrap() as usize, rr[i], "{c}");
        }
        for pruned in round["pruned"].as_array().unwrap() {
            let edge = pruned["edge"].as_str().unwrap();
            let want = (0..candidates.len())
                .filter(|&i| candidates[i]["edge"] == edge)
                .min_by_key(|&i| (kr[i] + rr[i], kr[i]))
                .unwrap();
            assert_eq!(pruned["op"], candidates[want]["op"], "edge {edge}");
            removed.push((edge.to_string(), pruned["op"].as_str().unwrap().to_string()));
        }
    }
    for (e, &(from, to)) in EDGES.iter().enumerate() {
        let edge = format!("{from}->{to}");
        let kept = arch.ops[e].name();
        assert!(
            !removed.contains(&(edge.clone(), kept.to_string())),
            "{edge} {kept}"
        );
        assert_eq!(
            removed.iter().filter(|(x, _)| *x == edge).count(),
            3,
            "{edge}"
        );
    }
}

#[test]
fn cli_bad_input_exits_2_with_a_message() {
    let dir = fixtures("bad");
    let truth = dir.join("truth.csv");
    let pool = dir.join("pool.csv");
    let missing = dir.join("no-such-file.txt");
    let (truth, pool, missing) = (
        truth.to_str().unwrap(),
        pool.to_str().unwrap(),
        missing.to_str().unwrap(),
    );
    for (args, needle) in [
        (vec!["search", "frobnicate"], "invalid value"),
        (
            vec!["search", "random", "--score", "nasw0t"],
            "unknown score",
        ),
        (vec!["search", "random", "--from", missing], "no such file"),
        (
            vec!["search", "random", "--from", pool, "-n", "7"],
            "exceeds",
        ),
        (vec!["search", "topk", "-n", "5", "--k", "6"], "exceeds"),
        (vec!["search", "evolution", "--runs", "2"], "does not apply"),
        (vec!["search", "prune", "--score", "naswot"], "ntk"),
        (vec!["search", "random", "--samples", "0"], "at least 1"),
        (
            vec!["search", "random", "--truth", truth, "--metric", "top1"],
            "top1",
        ),
        (vec!["search", "random", "--truth", missing], "no-such-file"),
        (
            vec!["search", "random", "--swap-mu", "1", "--swap-sigma", "2"],
            "swap_reg is not among the scores",
        ),
        (
            vec!["search", "random", "--score", "swap_reg", "--swap-mu", "1"],
            "--swap-sigma",
        ),
        (
            vec![
                "search",
                "random",
                "--score",
                "swap_reg",
                "--swap-mu",
                "1",
                "--swap-sigma",
                "0",
            ],
            "sigma > 0",
        ),
    ] {
        let out = nasrank(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn scores_from_a_results_file_are_not_recomputed() {
    let dir = fixtures("scores_from");
    // Fake NASWOT values: arch 7 is the best; no network could give these numbers.
    let mut file = String::from("index,arch,unique,naswot,seconds,scored_as\n");
    for (i, v) in [(3, 1.0), (7, 9.0), (11, 2.0), (20, -4.0)] {
        file += &format!("{i},{},u,{v},0,{i}\n", arch_of_index(i).unwrap());
    }
    std::fs::write(dir.join("scores.csv"), file).unwrap();
    std::fs::write(dir.join("pool.txt"), "3\n7\n11\n20\n").unwrap();
    let out = nasrank(&[
        "search",
        "random",
        "--samples",
        "4",
        "--runs",
        "1",
        "--quiet",
        "--json",
        "--from",
        dir.join("pool.txt").to_str().unwrap(),
        "--scores-from",
        dir.join("scores.csv").to_str().unwrap(),
        "--channels",
        "2",
        "--cells",
        "1",
        "--batch",
        "2",
    ]);
    let result = json_of(&out);
    assert_eq!(result["scored"], 0, "{result}");
    assert_eq!(result["runs"][0]["index"], 7, "{result}");
    assert_eq!(result["runs"][0]["score"], 9.0, "{result}");
}

#[test]
fn cli_search_scores_one_arch_per_class_of_equal_scores() {
    // 3 and 25 share NASWOT's codes key; 10 is dead (no path from input to output).
    let dir = fixtures("classes");
    let pool = dir.join("pool-classes.csv");
    std::fs::write(&pool, "index,cifar10_test\n3,0\n25,0\n10,0\n1,0\n").unwrap();
    let mut args = vec!["search", "random", "-n", "4", "--quiet", "--json"];
    args.extend(TINY);
    args.extend(["--from", pool.to_str().unwrap()]);
    let v = json_of(&nasrank(&args));
    assert_eq!(v["scored"], 3, "{v}");
    // The choice is the argmax of what `score` gives every arch alone.
    let best = naswot_argmax("3,25,10,1");
    let run = &v["runs"][0];
    assert_eq!(run["score"].as_f64().unwrap(), best.1, "{v}");
}

/// The reported best is the fittest arch the evolution evaluated. Every arch's score comes
/// from `--scores-from` (a permutation of the indices, so no ties and no correlation with
/// the index order); the same evolution is replayed here with the engine's algorithm and
/// the seed the run layer documents (`Seeds::search(0)`), and the best of its history,
/// found here, must be what the CLI reports. Catches reporting the last member, the final
/// population's best, the worst, or a score paired with another arch.
#[test]
fn cli_evolution_reports_the_fittest_arch_it_evaluated() {
    let dir = fixtures("evolution-best");
    let score_of = |i: usize| ((i * 7919) % NUM_ARCHS) as f64;
    let mut file = String::from("index,arch,unique,naswot,seconds,scored_as\n");
    for i in 0..NUM_ARCHS {
        let arch = arch_of_index(i).unwrap();
        file += &format!("{i},{arch},u,{},0,{i}\n", score_of(i));
    }
    let known = dir.join("known.csv");
    std::fs::write(&known, file).unwrap();
    let settings = EvolutionSettings {
        population: 5,
        sample: 3,
        cycles: 40,
    };
    let seed = 9;
    let v = json_of(&nasrank(&[
        "search",
        "evolution",
        "--population",
        "5",
        "--tournament",
        "3",
        "--cycles",
        "40",
        "--seed",
        "9",
        "--scores-from",
        known.to_str().unwrap(),
        "--quiet",
        "--json",
    ]));
    assert_eq!(v["scored"], 0, "every score came from --scores-from");
    let evo = regularized_evolution(settings, true, nasrank::data::Seeds(seed).search(0), |a| {
        score_of(index_of_arch(a))
    });
    let fittest = evo
        .history
        .iter()
        .max_by(|a, b| a.fitness.total_cmp(&b.fitness))
        .unwrap();
    let index = v["best"]["index"].as_u64().unwrap() as usize;
    assert_eq!(index, index_of_arch(&fittest.arch));
    assert_eq!(v["best"]["score"].as_f64().unwrap(), fittest.fitness);
    assert_eq!(v["best"]["score"].as_f64().unwrap(), score_of(index));
}

// ---------------------------------------------------------------- CLI, size space

/// A temp dir for one size-space test.
fn sss_dir(test: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("nasrank-search-sss-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The arch string at an SSS index, spec A1 (widths joined by `:`).
fn spec_string(index: usize) -> String {
    spec_widths(index).map(|w| w.to_string()).join(":")
}

/// The index of `C1:C2:C3:C4:C5`, spec A1.
fn spec_index(text: &str) -> usize {
    text.split(':')
        .map(|w| w.parse::<usize>().unwrap() / 8 - 1)
        .fold(0, |acc, d| acc * 8 + d)
}

#[test]
fn cli_random_on_the_size_space_picks_the_best_naswot_and_prints_size_strings() {
    let dir = sss_dir("random");
    // Small networks: 8:8:8:8:8 (0), index 12, 8:16:8:16:8, index 1234.
    let pool = dir.join("pool.txt");
    std::fs::write(&pool, "8:8:8:8:8\n12\n8:16:8:16:8\n1234\n").unwrap();
    let args = [
        "search",
        "random",
        "--space",
        "sss",
        "-n",
        "4",
        "--batch",
        "4",
        "--quiet",
        "--from",
        pool.to_str().unwrap(),
    ];
    let v = json_of(&nasrank(&[&args[..], &["--json"]].concat()));
    assert_eq!(v["space"], "sss", "{v}");
    assert_eq!(v["pool"], 4, "{v}");
    assert_eq!(v["scored"], 4, "{v}");
    let run = &v["runs"][0];
    let (index, arch) = (
        run["index"].as_u64().unwrap() as usize,
        run["arch"].as_str().unwrap(),
    );
    assert_eq!(arch, spec_string(index), "{v}");
    // The choice is the argmax of what `score --space sss` gives the pool's archs.
    let pool_indices = [0, 12, spec_index("8:16:8:16:8"), 1234];
    let list = pool_indices.map(|i| i.to_string()).join(",");
    let out = nasrank(&[
        "score", "--space", "sss", "--archs", &list, "--scores", "naswot", "--batch", "4",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let best = String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].parse::<usize>().unwrap(),
                f[1].to_string(),
                f[3].parse::<f64>().unwrap(),
            )
        })
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .unwrap();
    assert_eq!((index, arch.to_string()), (best.0, best.1.clone()), "{v}");
    assert_eq!(run["score"].as_f64().unwrap(), best.2);

    // The text report names the space and prints the size-space string.
    let out = nasrank(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().next().unwrap().contains("sss space"), "{text}");
    let row = text.lines().find(|l| l.starts_with("1 ")).expect(&text);
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(fields[1], best.0.to_string(), "{text}");
    assert_eq!(*fields.last().unwrap(), best.1, "{text}");
}

/// An SSS accuracy table: six archs on a chain of strictly growing params (spec A5: every
/// +8 step of a width adds params), so `--score params` keeps the last three by hand.
fn sss_truth(dir: &std::path::Path) -> (std::path::PathBuf, [&'static str; 6]) {
    let chain = [
        "8:8:8:8:8",
        "16:8:8:8:8",
        "16:16:8:8:8",
        "16:16:16:8:8",
        "16:16:16:16:8",
        "16:16:16:16:16",
    ];
    // The most accurate is not kept; of the kept, 16:16:16:16:8 is.
    let accuracy = [95.0, 80.0, 81.0, 82.0, 90.0, 85.0];
    let mut text = String::from("index,arch,cifar10_test\n");
    for (arch, acc) in chain.iter().zip(accuracy) {
        text += &format!("{},{arch},{acc}\n", spec_index(arch));
    }
    let path = dir.join("truth.csv");
    std::fs::write(&path, text).unwrap();
    (path, chain)
}

#[test]
fn cli_topk_on_the_size_space_samples_the_archs_of_truth_and_picks_by_accuracy() {
    let dir = sss_dir("topk");
    let (truth, chain) = sss_truth(&dir);
    let v = json_of(&nasrank(&[
        "search",
        "topk",
        "--space",
        "sss",
        "--score",
        "params",
        "-n",
        "6",
        "--k",
        "3",
        "--truth",
        truth.to_str().unwrap(),
        "--quiet",
        "--json",
    ]));
    assert_eq!(v["space"], "sss", "{v}");
    // No --from: the pool is the truth table's archs, not the 32,768 of the space.
    assert_eq!(v["pool"], 6, "{v}");
    assert_eq!(v["pool_source"], "truth", "{v}");
    let kept: Vec<&str> = v["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["arch"].as_str().unwrap())
        .collect();
    assert_eq!(kept, [chain[5], chain[4], chain[3]], "{v}");
    assert_eq!(v["pick"]["arch"], "16:16:16:16:8", "{v}");
    assert_eq!(v["pick"]["index"], spec_index("16:16:16:16:8"), "{v}");
    assert_eq!(v["pick"]["accuracy"].as_f64().unwrap(), 90.0);
    // The params the report gives are the spec's.
    assert_eq!(
        v["kept"][0]["score"].as_f64().unwrap(),
        spec_params([16; 5], 10)
    );

    // Without --truth the sample comes from the whole space.
    let v = json_of(&nasrank(&[
        "search", "topk", "--space", "sss", "--score", "params", "-n", "5", "--k", "2", "--quiet",
        "--json",
    ]));
    assert_eq!(v["pool"], SSS_ARCHS, "{v}");
    assert_eq!(v["pool_source"], "space", "{v}");
    assert!(v["pick"].is_null(), "{v}");
}

#[test]
fn cli_topk_with_truth_and_no_pool_samples_the_archs_of_truth_in_the_topology_space_too() {
    let dir = sss_dir("topk-tss");
    let path = dir.join("truth.csv");
    let picked = [6111, 1, 9, 5000];
    let mut text = String::from("index,cifar10_test\n");
    for (n, i) in picked.iter().enumerate() {
        text += &format!("{i},{}\n", 90.0 + n as f64);
    }
    std::fs::write(&path, text).unwrap();
    let mut args = vec![
        "search",
        "topk",
        "--score",
        "params",
        "-n",
        "4",
        "--k",
        "4",
        "--quiet",
        "--json",
        "--truth",
        path.to_str().unwrap(),
    ];
    args.extend(TINY);
    let v = json_of(&nasrank(&args));
    assert_eq!(v["space"], "tss", "{v}");
    let mut kept: Vec<u64> = v["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["index"].as_u64().unwrap())
        .collect();
    kept.sort_unstable();
    assert_eq!(kept, [1, 9, 5000, 6111], "{v}");
    // The most accurate of the table, as all are kept.
    assert_eq!(v["pick"]["index"], 5000, "{v}");
}

/// The size-space evolution the CLI runs is the engine's width-mutating evolution with the
/// documented seed: replayed here over the scores of `--scores-from` (a permutation of the
/// indices), the fittest arch of its history is what the CLI reports.
#[test]
fn cli_evolution_on_the_size_space_reports_the_fittest_arch_it_evaluated() {
    let dir = sss_dir("evolution");
    let score_of = |i: usize| ((i * 7919) % SSS_ARCHS) as f64;
    let mut file = String::from("index,arch,unique,naswot,seconds,scored_as\n");
    for i in 0..SSS_ARCHS {
        let arch = spec_string(i);
        file += &format!("{i},{arch},{arch},{},0,{i}\n", score_of(i));
    }
    let known = dir.join("known.csv");
    std::fs::write(&known, file).unwrap();
    let settings = EvolutionSettings {
        population: 5,
        sample: 3,
        cycles: 40,
    };
    let v = json_of(&nasrank(&[
        "search",
        "evolution",
        "--space",
        "sss",
        "--population",
        "5",
        "--tournament",
        "3",
        "--cycles",
        "40",
        "--seed",
        "9",
        "--scores-from",
        known.to_str().unwrap(),
        "--quiet",
        "--json",
    ]));
    assert_eq!(v["space"], "sss", "{v}");
    assert_eq!(v["scored"], 0, "every score came from --scores-from");
    let evo = regularized_evolution(
        settings,
        true,
        nasrank::data::Seeds(9).search(0),
        |a: &SizeArch| score_of(spec_index(&a.to_string())),
    );
    let fittest = evo
        .history
        .iter()
        .max_by(|a, b| a.fitness.total_cmp(&b.fitness))
        .unwrap();
    let index = v["best"]["index"].as_u64().unwrap() as usize;
    assert_eq!(v["best"]["arch"], fittest.arch.to_string(), "{v}");
    assert_eq!(index, spec_index(&fittest.arch.to_string()));
    assert_eq!(v["best"]["score"].as_f64().unwrap(), score_of(index));
}

#[test]
fn cli_size_space_bad_input_exits_2_with_a_message() {
    let dir = sss_dir("bad");
    let (truth, _) = sss_truth(&dir);
    let tss_pool = dir.join("tss-pool.txt");
    std::fs::write(&tss_pool, "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|\n").unwrap();
    let far = dir.join("far-pool.txt");
    std::fs::write(&far, "12\n40000\n").unwrap();
    // A topology-space table (its arch strings are no size-space archs).
    let tss_truth = dir.join("tss-truth.csv");
    std::fs::write(
        &tss_truth,
        format!(
            "index,arch,cifar10_test\n1,{},90\n",
            arch_of_index(1).unwrap()
        ),
    )
    .unwrap();
    // Scores of the topology space, with the manifest `score` writes.
    let tss_scores = dir.join("tss-scores.csv");
    let out = nasrank(&[
        "score",
        "--archs",
        "0..3",
        "--scores",
        "params",
        "--quiet",
        "--out",
        tss_scores.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (truth, tss_pool, far, tss_truth, tss_scores) = (
        truth.to_str().unwrap(),
        tss_pool.to_str().unwrap(),
        far.to_str().unwrap(),
        tss_truth.to_str().unwrap(),
        tss_scores.to_str().unwrap(),
    );
    for (args, needle) in [
        (
            vec!["search", "prune", "--space", "sss"],
            "topology space's supernet only",
        ),
        (
            vec!["search", "prune", "--space", "sss", "--score", "naswot"],
            "topology space's supernet only",
        ),
        (
            vec![
                "search",
                "evolution",
                "--space",
                "sss",
                "--score",
                "linear_regions",
            ],
            "linear_regions is not defined on the sss space",
        ),
        (
            vec![
                "search",
                "topk",
                "--space",
                "sss",
                "--score",
                "linear_regions",
            ],
            "linear_regions is not defined on the sss space",
        ),
        (
            vec!["search", "random", "--space", "sss", "--channels", "4"],
            "--channels and --cells",
        ),
        (vec!["search", "random", "--space", "xyz"], "unknown space"),
        (
            vec!["search", "random", "--space", "sss", "--from", tss_pool],
            "bad sss arch string",
        ),
        (
            vec!["search", "random", "--space", "sss", "--from", far],
            "out of range",
        ),
        (
            vec!["search", "random", "--space", "sss", "--samples", "40000"],
            "exceeds the 32768 archs",
        ),
        (
            vec![
                "search", "topk", "--space", "sss", "-n", "7", "--k", "2", "--truth", truth,
            ],
            "in --truth",
        ),
        (
            vec!["search", "random", "--space", "sss", "--truth", tss_truth],
            "bad sss arch string",
        ),
        (
            vec![
                "search",
                "random",
                "--space",
                "sss",
                "--score",
                "params",
                "--scores-from",
                tss_scores,
            ],
            "scores of the tss space",
        ),
    ] {
        let out = nasrank(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}

/// A set score drives random and top-k over each sample: sampling the whole pool, the
/// chosen arch is the argmax of the `az_nas` column `score` writes over the same archs,
/// and top-k keeps that column's k best; evolution and --scores-from refuse it (exit 2).
#[test]
fn cli_searches_by_the_az_nas_set_score_rank_the_sample() {
    let dir = fixtures("az_nas");
    let pool = dir.join("pool.csv");
    let archs = "1,6111,123,9,5000,777";
    let mut args = vec!["score", "--archs", archs, "--scores", "az_nas", "--quiet"];
    args.extend(TINY);
    let scored = nasrank(&args);
    assert!(scored.status.success(), "{}", stderr(&scored));
    let text = String::from_utf8_lossy(&scored.stdout).to_string();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let at = header.iter().position(|h| *h == "az_nas").unwrap();
    let mut column: Vec<(u64, f64)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[at].parse().unwrap())
        })
        .collect();
    column.sort_by(|a, b| b.1.total_cmp(&a.1));

    let mut args = vec![
        "search", "random", "-n", "6", "--score", "az_nas", "--quiet", "--json",
    ];
    args.extend(TINY);
    args.extend(["--from", pool.to_str().unwrap()]);
    let v = json_of(&nasrank(&args));
    assert_eq!(v["score"], "az_nas");
    assert_eq!(v["runs"][0]["index"], column[0].0);
    assert_eq!(v["runs"][0]["score"].as_f64().unwrap(), column[0].1);

    let mut args = vec!["search", "topk", "-n", "6", "--k", "3", "--score", "az_nas"];
    args.extend(["--quiet", "--json", "--from", pool.to_str().unwrap()]);
    args.extend(TINY);
    let v = json_of(&nasrank(&args));
    let kept: Vec<(u64, f64)> = v["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["index"].as_u64().unwrap(), k["score"].as_f64().unwrap()))
        .collect();
    assert_eq!(kept, column[..3].to_vec());

    let out = nasrank(&["search", "evolution", "--score", "az_nas", "--quiet"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("random or topk"), "{}", stderr(&out));
    let out = nasrank(&[
        "search",
        "random",
        "--score",
        "az_nas",
        "--scores-from",
        pool.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("set score"), "{}", stderr(&out));
}
