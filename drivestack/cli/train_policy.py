"""`drivestack train policy`: train a driving policy (stable-baselines3 PPO or DQN) on the batched simulator.

The options are `planning.train.TrainPolicyConfig`'s fields; the run directory it writes holds config.json,
TensorBoard logs under tb/, and checkpoints (step_<n>, best, final) that `planning.checkpoint.load_policy`
reads back without executing code.

With `--sweep SPEC.json [--ray [ADDRESS]]` the command runs a Ray Tune sweep instead: every trial is an ordinary
training run (its own run directory under `<run-dir>/trials/`, TensorBoard, checkpoints, `--resume`-able) of the
command's options with the spec's hyperparameters drawn over them; each of the training monitor's evaluations is
reported to Tune (`eval_return`, `eval_collision_rate`) and ASHA stops the trials that fall behind. The sweep
writes `sweep.json` (every trial: its parameters, last evaluation, status, run directory), `sweep.csv` and
`sweep.png` (evaluation return and collision rate over timesteps per trial) into `<run-dir>`. A spec:

    {"search": {"learning_rate": {"loguniform": [1e-4, 1e-3]},     # uniform, loguniform, randint [lo, hi)
                "gamma": {"choice": [0.8, 0.9, 0.95]},             # choice: drawn; grid: every value
                "n_steps": {"grid": [16, 32]}},
     "num_samples": 4,            # draws (times every grid combination)
     "metric": "eval_return",     # or eval_collision_rate (then minimised)
     "grace_timesteps": 20000,    # ASHA: no trial stops before it has trained this many steps (default 2 evals)
     "reduction_factor": 2,       # ASHA: keep the best 1/reduction_factor at each rung
     "max_concurrent": null}      # trials at once (default: one per CPU of the cluster)
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import threading
import time
from pathlib import Path
from typing import Annotated, Any

from drivestack.common.artifacts import write_text
from drivestack.distributed import LOCAL, RAY_OPTION
from drivestack.planning import train as planning_train
from drivestack.planning.train import Algo, resolve

__all__ = ["Algo", "TrainPolicyConfig", "run_train"]

DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice", "grid")
METRICS = {"eval_return": "max", "eval_collision_rate": "min"}
SPEC_KEYS = ("search", "num_samples", "metric", "grace_timesteps", "reduction_factor", "max_concurrent")
# Options a trial sets itself: its run directory, and no progress bar of its own
NOT_SEARCHABLE = ("run_dir", "resume", "progress", "algo", "env", "device")
POLL = 1.0  # [s] how often a trial looks for a new evaluation in its progress.csv


@dataclasses.dataclass(frozen=True)
class TrainPolicyConfig(planning_train.TrainPolicyConfig):
    """Train a driving policy (stable-baselines3 PPO or DQN) on the batched simulator; writes a run directory."""

    sweep: Path | None = None
    """A Ray Tune sweep (ASHA) over the hyperparameters of this JSON spec (see docs/ray.md) instead of one run:
    every trial a run directory under <run-dir>/trials, a summary table, sweep.json and sweep.png in <run-dir>."""
    ray: Annotated[str | None, RAY_OPTION] = None
    """Where the sweep runs: alone, a local Ray instance on this machine's cores (also the default of --sweep);
    `auto` or `ray://HOST:10001`, a cluster (--run-dir on a filesystem every node sees). Needs --sweep and the
    extra: pip install -e ".[ray]"."""

    def training_config(self, **changes: Any) -> planning_train.TrainPolicyConfig:
        """The config of one training run: this one's training options (no sweep, no Ray) with `changes`."""
        names = [f.name for f in dataclasses.fields(planning_train.TrainPolicyConfig)]
        return planning_train.TrainPolicyConfig(**{**{n: getattr(self, n) for n in names}, **changes})


def run_train(cfg: planning_train.TrainPolicyConfig) -> dict[str, Any]:
    """One training run, or with --sweep a Ray Tune sweep of them; returns the run's (the sweep's) summary."""
    sweep, address = getattr(cfg, "sweep", None), getattr(cfg, "ray", None)
    if sweep is None:
        if address is not None:
            raise ValueError("--ray needs --sweep SPEC.json: one training run trains in one process")
        if isinstance(cfg, TrainPolicyConfig):
            cfg = cfg.training_config()
        return planning_train.run_train(cfg)
    assert isinstance(cfg, TrainPolicyConfig)
    return run_sweep(cfg, load_spec(Path(sweep), cfg), address or LOCAL)


# ------------------------------------------------------------------------------------------- the spec


def load_spec(path: Path, cfg: TrainPolicyConfig) -> dict[str, Any]:
    """The sweep spec at `path`, checked against the command's algorithm (one-line ValueError naming the key)."""
    if not path.is_file():
        raise FileNotFoundError(f"--sweep {path}: no such file; pass a JSON sweep spec (see docs/ray.md)")
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"--sweep {path}: not valid JSON ({err})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("search"), dict) or not spec["search"]:
        raise ValueError(f'--sweep {path}: needs a non-empty "search" object of hyperparameters (see docs/ray.md)')
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"--sweep {path}: unknown key {unknown[0]!r}; allowed: {', '.join(SPEC_KEYS)}")
    fields = {f.name for f in dataclasses.fields(planning_train.TrainPolicyConfig)} - set(NOT_SEARCHABLE)
    for name, dist in spec["search"].items():
        if name not in fields:
            raise ValueError(
                f"--sweep {path}: {name!r} is not a training option one can search; "
                f"allowed: {', '.join(sorted(fields))}"
            )
        if not (isinstance(dist, dict) and len(dist) == 1 and next(iter(dist)) in DISTRIBUTIONS):
            kinds = ", ".join(f'{{"{kind}": [...]}}' for kind in DISTRIBUTIONS)
            raise ValueError(f'--sweep {path}: search["{name}"] must be one of {kinds}')
        kind, values = next(iter(dist.items()))
        if (
            not isinstance(values, list)
            or not values
            or (kind in ("uniform", "loguniform", "randint") and len(values) != 2)
        ):
            raise ValueError(f'--sweep {path}: search["{name}"]["{kind}"] must be a list ([low, high] for {kind})')
        for value in values if kind in ("choice", "grid") else []:  # every listed value must be a valid option
            _check_value(cfg, name, value, path)
    if spec.get("metric", "eval_return") not in METRICS:
        raise ValueError(f"--sweep {path}: metric {spec['metric']!r}; allowed: {', '.join(METRICS)}")
    for key, low in (("num_samples", 1), ("grace_timesteps", 1), ("reduction_factor", 2)):
        value = spec.get(key)
        if value is not None and (not isinstance(value, int | float) or value < low):
            raise ValueError(f"--sweep {path}: {key}={value!r}; allowed: a number >= {low}")
    return spec


def _check_value(cfg: TrainPolicyConfig, name: str, value: Any, path: Path) -> None:
    value = tuple(value) if isinstance(value, list) else value
    try:
        resolve(cfg.training_config(**{name: value}))
    except (ValueError, TypeError) as err:
        raise ValueError(f'--sweep {path}: search["{name}"] value {value!r}: {err}') from None


def _search_space(spec: dict[str, Any]) -> dict[str, Any]:
    from ray import tune

    space = {}
    for name, dist in spec["search"].items():
        kind, values = next(iter(dist.items()))
        values = [tuple(v) if isinstance(v, list) else v for v in values]
        space[name] = {
            "uniform": lambda v: tune.uniform(*v),
            "loguniform": lambda v: tune.loguniform(*v),
            "randint": lambda v: tune.randint(*v),
            "choice": tune.choice,
            "grid": tune.grid_search,
        }[kind](values)
    return space


# ------------------------------------------------------------------------------------------- one trial


def _evaluations(progress_csv: Path) -> list[dict[str, float]]:
    """The evaluation rows of a run's progress.csv so far: timesteps, eval return and collision rate."""
    if not progress_csv.is_file():
        return []
    text = progress_csv.read_text()
    lines = text.splitlines()[: text.count("\n")]  # complete lines only: the monitor may be writing one
    rows = []
    for row in csv.DictReader(lines):
        if row.get("eval/return") and row.get("time/total_timesteps"):
            try:
                rows.append(
                    {
                        "timesteps": int(float(row["time/total_timesteps"])),
                        "eval_return": float(row["eval/return"]),
                        "eval_collision_rate": float(row["eval/collision_rate"]),
                    }
                )
            except (KeyError, ValueError, TypeError):  # a row caught while SB3 rewrites the header
                continue
    return rows


def sweep_trial(params: dict[str, Any], base: TrainPolicyConfig, trials_dir: Path) -> None:
    """One Tune trial: an ordinary training run of `base` with `params`, in trials_dir/<trial name>; each of the
    training monitor's evaluations (read from the run's progress.csv) is reported to Tune as it lands."""
    from ray import tune

    name = tune.get_context().get_trial_name()
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    cfg = base.training_config(**params, run_dir=trials_dir / name, progress=False)
    outcome: dict[str, Any] = {}

    def train() -> None:
        try:
            outcome["summary"] = planning_train.run_train(cfg)
        except BaseException as err:  # re-raised in the trial's own thread below
            outcome["error"] = err

    worker = threading.Thread(target=train, name=f"train-{name}", daemon=True)  # dies with a stopped trial
    worker.start()
    reported = 0  # timesteps of the last evaluation reported
    while True:
        alive = worker.is_alive()
        for row in _evaluations(Path(cfg.run_dir or ".") / "tb" / "progress.csv"):
            if row["timesteps"] > reported:
                tune.report({**row, "run_dir": str(cfg.run_dir)})  # ASHA may stop the trial here
                reported = row["timesteps"]
        if not alive:
            break
        time.sleep(POLL)
    if "error" in outcome:
        raise outcome["error"]


# ------------------------------------------------------------------------------------------- the sweep


def run_sweep(cfg: TrainPolicyConfig, spec: dict[str, Any], address: str) -> dict[str, Any]:
    """Run the sweep of `spec` over `cfg` on Ray Tune with ASHA; print the table, write sweep.json, sweep.csv and
    sweep.png under the sweep directory (cfg.run_dir, default runs/sweep/<algo>-<env>-<seed>)."""
    from drivestack import distributed

    base = resolve(cfg.training_config(run_dir=cfg.run_dir or Path("x")))  # every fixed option checked now
    total, every = int(base.total_timesteps or 0), int(cfg.eval_every)
    if not 0 < every < total:
        raise ValueError(
            f"--eval-every {every} with --total-timesteps {total}: a sweep needs evaluations during training for "
            "ASHA to compare trials; pass --eval-every below --total-timesteps"
        )
    sweep_dir = Path(
        cfg.run_dir or Path("runs/sweep") / f"{Algo(cfg.algo).value}-{planning_train.env_name(cfg.env)}-{cfg.seed}"
    ).absolute()  # trials may start in another folder
    if sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise ValueError(f"--run-dir {sweep_dir} already holds a run or sweep; pass a new --run-dir")
    metric = spec.get("metric", "eval_return")
    grace = int(spec.get("grace_timesteps", 2 * every))

    distributed.import_ray()  # without the extra: the one-line error, before `ray.tune` is imported
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    with distributed.ray_session(address):
        scheduler = ASHAScheduler(
            time_attr="timesteps",
            max_t=total,
            grace_period=min(grace, total),
            reduction_factor=float(spec.get("reduction_factor", 2)),
        )
        trainable = tune.with_resources(
            tune.with_parameters(sweep_trial, base=cfg, trials_dir=sweep_dir / "trials"), {"cpu": max(1, cfg.threads)}
        )
        tuner = tune.Tuner(
            trainable,
            param_space=_search_space(spec),
            tune_config=tune.TuneConfig(
                metric=metric,
                mode=METRICS[metric],
                scheduler=scheduler,
                num_samples=int(spec.get("num_samples", 1)),
                max_concurrent_trials=spec.get("max_concurrent") or distributed.cluster_cpus(),
            ),
            run_config=tune.RunConfig(name="tune", storage_path=str(sweep_dir), verbose=0),
        )
        start = time.perf_counter()
        grid = tuner.fit()
        elapsed = time.perf_counter() - start
    trials = _trial_rows(grid, spec, total)
    if not trials:
        raise RuntimeError(f"the sweep ran no trial; see {sweep_dir / 'tune'}")
    summary = {
        "sweep": str(sweep_dir),
        "metric": metric,
        "mode": METRICS[metric],
        "algo": Algo(cfg.algo).value,
        "env": cfg.env,
        "total_timesteps": total,
        "seconds": elapsed,
        "search": spec["search"],
        "trials": trials,
    }
    return {**summary, "files": write_summary(summary, sweep_dir)}


def _trial_rows(grid: Any, spec: dict[str, Any], total: int) -> list[dict[str, Any]]:
    rows = []
    for result in grid:
        history = result.metrics_dataframe
        curve = (
            []
            if history is None or "timesteps" not in history
            else history[["timesteps", "eval_return", "eval_collision_rate"]].to_dict("records")
        )
        last = curve[-1] if curve else {}
        status = "error" if result.error else ("completed" if last.get("timesteps", 0) >= total else "stopped")
        rows.append(
            {
                "trial": Path(str(result.metrics.get("run_dir") or result.path)).name,
                "params": {k: result.config.get(k) for k in spec["search"]},
                "timesteps": int(last.get("timesteps", 0)),
                "eval_return": _finite(last.get("eval_return")),
                "eval_collision_rate": _finite(last.get("eval_collision_rate")),
                "status": status,
                "error": str(result.error).splitlines()[0] if result.error else None,
                "run_dir": result.metrics.get("run_dir"),
                "curve": [{k: float(v) for k, v in point.items()} for point in curve],
            }
        )
    return sorted(rows, key=lambda r: r["trial"])


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def write_summary(summary: dict[str, Any], sweep_dir: Path) -> dict[str, str]:
    """Print the trials as a table; write sweep.json, sweep.csv and sweep.png into `sweep_dir`. Returns the paths."""
    from rich.console import Console
    from rich.table import Table

    from drivestack.report import save_figure, write_json

    trials, names = summary["trials"], list(summary["search"])
    table = Table(title=f"sweep {summary['algo']} {summary['env']}: {len(trials)} trials, {summary['seconds']:.0f} s")
    for column in ("trial", *names, "timesteps", "eval return", "collisions", "status"):
        table.add_column(column, justify="left" if column in ("trial", "status") else "right")
    for t in trials:
        ret, col = t["eval_return"], t["eval_collision_rate"]
        table.add_row(
            t["trial"],
            *[_cell(t["params"][n]) for n in names],
            f"{t['timesteps']:,}",
            "-" if ret is None else f"{ret:.2f}",
            "-" if col is None else f"{100 * col:.1f}%",
            t["status"],
        )
    Console(width=max(Console().width, 120)).print(table)

    json_path = write_json(sweep_dir / "sweep.json", summary, indent=1)
    lines = [",".join(["trial", *names, "timesteps", "eval_return", "eval_collision_rate", "status", "run_dir"])]
    for t in trials:
        cells = [t["trial"], *[_cell(t["params"][n]) for n in names], str(t["timesteps"])]
        cells += [_cell(t["eval_return"]), _cell(t["eval_collision_rate"]), t["status"], str(t["run_dir"] or "")]
        lines.append(",".join(c.replace(",", ";") for c in cells))
    csv_path = write_text(sweep_dir / "sweep.csv", "\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_ret, ax_col) = plt.subplots(1, 2, figsize=(12, 4.5))
    for t in trials:
        steps = [p["timesteps"] for p in t["curve"]]
        label = f"{t['trial']} ({t['status']})"
        ax_ret.plot(steps, [p["eval_return"] for p in t["curve"]], marker="o", label=label)
        ax_col.plot(steps, [100 * p["eval_collision_rate"] for p in t["curve"]], marker="o", label=label)
    for ax, ylabel in ((ax_ret, "evaluation return"), (ax_col, "evaluation collisions [%]")):
        ax.set_xlabel("timesteps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    ax_ret.legend(fontsize=7)
    fig.suptitle(f"ASHA sweep, {summary['algo']} on {summary['env']}, metric {summary['metric']}", fontsize=10)
    fig.tight_layout()
    plot_path = save_figure(fig, sweep_dir / "sweep.png", dpi=110)
    print(f"wrote {json_path}, {csv_path} and {plot_path}; trials under {sweep_dir / 'trials'}")
    return {"json": str(json_path), "csv": str(csv_path), "plot": str(plot_path)}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
