"""Ember's load generator: ``python -m bench {pairs,connect,idle} [options]`` (see ``bench.cli``).

Rooms: ``cli`` (coordinator: gateway, admin setup, phases, results), ``worker``
(one load process, driven over pipes), ``load`` (what each scenario does),
``conn`` (a cheap protocol connection), ``target`` (spawned or running gateway,
signed admin calls), ``procfs`` (CPU, RSS, limits), ``hist`` (HDR histograms),
``report`` (table, JSON, plot). Figures and the commands behind them: RESULTS.md.
"""
