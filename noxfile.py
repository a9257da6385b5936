"""nox sessions: tests, lint, the plain-install check, the README demo, GPU tests and benchmarks.

CPU machines install the CPU build of torch through ``constraints/cpu.txt``; the ``gpu`` session
keeps whatever torch the machine resolves (a CUDA build).
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"

CPU = ("-c", "constraints/cpu.txt")
DEMO_PROBLEMS = (
    "fokker-planck/*",
    "porous-medium/*",
    "aggregation/*",
    "kalman-wasserstein/*",
    "nonlinear-mobility/*",
)
DEMO_SOLVERS = ("reference", "frozen", "equilibrium", "langevin", "fv-jko", "quantile-jko", "entropic-jko")


def _install(session: nox.Session, *extras: str, cpu: bool = True) -> None:
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install(*(CPU if cpu else ()), "-e", spec)


@nox.session
def tests(session: nox.Session) -> None:
    """The default test suite (no slow or GPU tests): ``nox -s tests``. Playwright drives the
    system chromium (``.ci/run`` installs it) for the HTML report's browser test."""
    _install(session, "test")
    session.install("playwright")
    session.run("pytest", "-m", "not slow and not gpu", *session.posargs)


@nox.session
def slow(session: nox.Session) -> None:
    """Long checks (convergence tables, many particles)."""
    _install(session, "test")
    session.run("pytest", "-m", "slow", "-s", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def install(session: nox.Session) -> None:
    """A plain (non-editable) install finds every built-in through entry points."""
    session.install(*CPU, ".")
    tmp = session.create_tmp()
    session.chdir(tmp)  # away from the source tree, so only the installed copy can be imported
    session.run(
        "python",
        "-c",
        "import json, subprocess, sys, wgfbench, wgfbench_plugins;"
        "assert 'site-packages' in wgfbench_plugins.__file__, wgfbench_plugins.__file__;"
        "out = json.loads(subprocess.check_output(['wgfbench', 'list', '--format', 'json']));"
        "names = {s['name'] for s in out['solvers']} | {p['name'] for p in out['problems']};"
        "need = {'reference', 'langevin', 'fokker-planck/ou-2d', 'porous-medium/barenblatt-2d-m2',"
        " 'aggregation/newtonian-2d', 'kalman-wasserstein/elliptic-2d'};"
        "assert need <= names, need - names; assert not out['failures'], out['failures'];"
        "print('plain install OK:', len(out['solvers']), 'solvers,', len(out['problems']), 'problems')",
    )
    session.run(
        "wgfbench",
        "run",
        "--solver",
        "reference",
        "--problem",
        "fokker-planck/ou-1d",
        "--tier",
        "smoke",
        "--out",
        os.path.join(tmp, "run"),
    )


def _run_demo(session: nox.Session, tier: str) -> str:
    out = f"runs/demo-{tier}"
    problems = [arg for pattern in DEMO_PROBLEMS for arg in ("--problem", pattern)]
    solvers = [arg for name in DEMO_SOLVERS for arg in ("--solver", name)]
    session.run(
        "wgfbench",
        "run",
        *solvers,
        *problems,
        "--seeds",
        "3",
        "--tier",
        tier,
        "--out",
        out,
        "--resume",
    )
    return out


@nox.session
def demo(session: nox.Session) -> None:
    """The README's benchmark: the baselines and the classical JKO solvers on problems of all five
    families, 3 seeds, smoke tier on CPU (``nox -s demo -- quick`` for the quick tier), then the
    leaderboard."""
    _install(session)
    out = _run_demo(session, session.posargs[0] if session.posargs else "smoke")
    session.run("wgfbench", "leaderboard", out, "--out", f"{out}/leaderboard")


@nox.session
def bench(session: nox.Session) -> None:
    """Harness performance: scoring vs solving share of the demo campaign (run if missing, resumed
    otherwise), and the time of one w2 + floor at each tier's n_eval."""
    _install(session)
    out = _run_demo(session, "smoke")
    session.run("python", "benchmarks/harness.py", out, *session.posargs)


@nox.session(name="bench_jko")
def bench_jko(session: nox.Session) -> None:
    """Classical JKO steps side by side: fv-jko and entropic-jko at 64², 128², 32³ (porous medium):
    median time per step, Newton/linear-solve/Sinkhorn counts and L1 errors at equal tau."""
    _install(session)
    session.run("python", "benchmarks/jko_steps.py", *session.posargs)


@nox.session(name="bench_deep_jko")
def bench_deep_jko(session: nox.Session) -> None:
    """Deep JKO: one training iteration with the explicit OT-Flow recurrences vs autograd at
    d = 2, 10, 30 (ratio side by side), and time per JKO step at the quick tier."""
    _install(session)
    session.run("python", "benchmarks/deep_jko.py", *session.posargs)


@nox.session(name="bench_learn_to_evolve")
def bench_learn_to_evolve(session: nox.Session) -> None:
    """Learn-to-Evolve: the three training arms on held-out densities of six family problems, and
    the operator's time per step beside deep-jko and fv-jko with the break-even trajectory count."""
    _install(session)
    session.run("python", "benchmarks/learn_to_evolve.py", *session.posargs, env={"OMP_NUM_THREADS": "1"})


@nox.session(name="bench_pwgf")
def bench_pwgf(session: nox.Session) -> None:
    """PWGF: cost per step and per unit of simulated time beside deep-jko on OU in d = 2, 10, 32
    (``scaling``, the default), or ``steps`` (time-step convergence) / ``validate`` (tuning on
    initial-family members) given as the first argument."""
    _install(session)
    args = session.posargs or ["scaling"]
    session.run("python", "benchmarks/pwgf.py", *args, env={"OMP_NUM_THREADS": "1"})


@nox.session(name="bench_campaign")
def bench_campaign(session: nox.Session) -> None:
    """Executors side by side: one CPU-bound smoke campaign with the local executor and with 1 and
    2 single-threaded Dask workers; prints the speed-up of 2 workers over 1 and the Dask overhead
    per case (``benchmarks/campaign.py``; ``-- --out DIR`` keeps the table and its manifest)."""
    _install(session)
    session.run("python", "benchmarks/campaign.py", *session.posargs, env={"OMP_NUM_THREADS": "1"})


@nox.session
def gpu(session: nox.Session) -> None:
    """GPU-marked tests, on a machine with CUDA (keeps the CUDA torch the machine resolves)."""
    _install(session, "test", cpu=False)
    has_cuda = "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
    session.run("python", "-c", has_cuda)
    session.run("pytest", "-m", "gpu", *session.posargs)
