"""Regularized evolution (Real et al. 2019) written in Python, with nasrank.Scorer as its
fitness: the data is read and the backend picked once, each arch costs one engine call.

    python python/examples/regularized_evolution.py [--data cifar10:PATH] [--cycles 200]
"""
import argparse
import collections
import random

import nasrank

OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
EDGES = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]  # (to, from) in arch-string order


def arch_string(ops):
    """The NAS-Bench-201 string of six edge ops."""
    nodes, k = [], 0
    for to in (1, 2, 3):
        parts = []
        for _ in range(to):
            parts.append(f"{ops[k]}~{EDGES[k][1]}")
            k += 1
        nodes.append("|" + "|".join(parts) + "|")
    return "+".join(nodes)


def mutate(ops, rng):
    """One edge gets another op."""
    ops = list(ops)
    edge = rng.randrange(len(ops))
    ops[edge] = rng.choice([op for op in OPS if op != ops[edge]])
    return ops


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="synthetic")
    p.add_argument("--score", default="naswot")
    p.add_argument("--population", type=int, default=20)
    p.add_argument("--sample", type=int, default=5)
    p.add_argument("--cycles", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    rng = random.Random(a.seed)
    scorer = nasrank.Scorer(a.score, data=a.data)
    fitness = lambda ops: scorer(arch_string(ops))[a.score]  # noqa: E731

    population = collections.deque()
    history = []
    while len(population) < a.population:
        ops = [rng.choice(OPS) for _ in EDGES]
        population.append((ops, fitness(ops)))
        history.append(population[-1])
    for _ in range(a.cycles):
        parent = max(rng.sample(list(population), a.sample), key=lambda m: m[1])
        child = mutate(parent[0], rng)
        population.append((child, fitness(child)))
        history.append(population[-1])
        population.popleft()  # the oldest dies
    best_ops, best = max(history, key=lambda m: m[1])
    info = nasrank.arch(arch_string(best_ops))
    print(f"best {a.score} {best:.4f}: arch {info.index} {info.arch} ({info.params} params)")


if __name__ == "__main__":
    main()
