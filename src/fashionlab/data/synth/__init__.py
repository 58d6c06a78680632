"""Embedded synthetic datasets in the competitions' own layouts (drawn with PIL; no downloads).

Every generator is a pure, seeded function ``f(out, ..., seed=0) -> out``: the same arguments give
byte-identical files. The labels are visible properties of the drawings, so a small ImageNet
backbone learns them quickly; they are synthetic, for demos and tests, not benchmarks. Each task names
its generator in its registry entry (``Task.synth_generator``); ``fashionlab data synth TASK`` runs it.
"""
