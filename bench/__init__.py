"""Benchmark of the real stack: gateway + bank simulator + MariaDB, driven by wrk.

Run it from the repository root with ``python -m bench`` (``make bench``); see bench/README.md
for the method, the flags and how to read the numbers. The modules, in the order a run uses
them:

- ``options``: the command line;
- ``procfs``: process trees, CPU time and memory from /proc;
- ``services``: uvicorn processes in their own process groups;
- ``mariadb``: the benchmark's own database and user, and statement counting;
- ``wrk``: installing and running wrk with ``load.lua``, parsing its result line;
- ``memory``: RSS sampling during a run, and the memory table;
- ``measurement``: one measured run (CPU, statements, RSS) and the integrity check;
- ``logscan``, ``machine``: the service logs' warnings and the machine description;
- ``results``: the typed report and its JSON form (``results/*.json``);
- ``report``: the report from the measurements (targets, ratios) and the files written;
- ``markdown``: the report as Markdown (``results/*.md``);
- ``session``: the whole benchmark, with clean-up on any exit.
"""
