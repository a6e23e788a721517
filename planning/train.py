"""Train a driving policy with stable-baselines3 (PPO or DQN) on the batched simulator.

One run writes one directory:

    config.json             the resolved config (defaults filled in) and the env config
    tb/                     TensorBoard events and progress.csv: SB3's train/* losses, rollout/exploration_rate
                            (DQN), charts/episodic_return, charts/episode_length, charts/collision_rate,
                            charts/off_road_rate, charts/mean_speed, charts/SPS, eval/return, eval/collision_rate,
                            eval/off_road_rate, eval/mean_speed, eval/episode_length (the episode metrics
                            of `planning.metrics`: mean_speed is pooled distance over pooled time, as in
                            `drivestack eval policy`)
    checkpoints/step_<n>/   every `checkpoint_every` timesteps (resumable: DQN ones hold the replay buffer)
    checkpoints/best/       the best periodic evaluation (highest return, ties to the lower collision rate)
    checkpoints/final/      at the end
    learning_curve.png      episode return, collision rate and mean speed over timesteps (training and evaluation)

`--resume` continues a run from its latest checkpoint: weights, optimizer state, timestep count, update and
exploration counters and (DQN) the replay buffer; TensorBoard and progress.csv go on in the same files.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm

from drivestack.common.artifacts import check_out_dir, make_run_dir, to_jsonable, write_json
from drivestack.common.checks import check_number, require
from drivestack.common.host import resolve_device, using_threads
from drivestack.planning.checkpoint import (
    env_config_from_dict,
    env_config_to_dict,
    latest_checkpoint,
    load_checkpoint,
    make_meta,
    make_model,
    read_meta,
    save_checkpoint,
)
from drivestack.planning.curves import plot_learning_curve
from drivestack.planning.monitor import TrainingMonitor, better, evaluate_model, make_logger
from drivestack.sim.batched_env import MAX_NUM_ENVS
from drivestack.sim.config import ENV_CONFIGS, EnvConfig
from drivestack.sim.config import env_config as env_config_for
from drivestack.sim.vector_env import SB3DrivingVecEnv

EVAL_SEED_OFFSET = 1_000_003  # evaluation scenarios never coincide with the training ones of the same seed


class Algo(str, Enum):
    PPO = "ppo"  # on-policy, clipped policy gradient: the default, it uses large batched rollouts best
    DQN = "dqn"  # off-policy Q-learning with a replay buffer and an epsilon-greedy schedule


# Defaults per algorithm, chosen for this task on a 2-core CPU: 5 x 5 kinematics in, 5 meta-actions out, 1 Hz
# decisions, 40-step episodes, rewards in [0, 1] per step. The simulator is batched, so many environments and
# large minibatches cost little; a short discount suits the few-seconds consequences of a maneuver.
# Measured on the 2-core CPU (another job busy on one core): PPO defaults train at ~1,550 env steps/s including
# updates; after 5 minutes (459k steps) the greedy policy crashes in ~10 % of 256 held-out highway episodes at
# 22.3 m/s (always-IDLE: 39 %, 22.0 m/s; the IDM/MOBIL rule policy: 0 %, 23.3 m/s).
NUM_ENVS = {Algo.PPO: 128, Algo.DQN: 32}
TOTAL_TIMESTEPS = {Algo.PPO: 500_000, Algo.DQN: 200_000}
PPO_DEFAULTS: dict[str, Any] = dict(
    learning_rate=5e-4,
    n_steps=32,
    batch_size=1024,
    n_epochs=5,
    gamma=0.9,
    gae_lambda=0.95,
    clip_range=0.2,
    ent_coef=0.01,
    vf_coef=0.5,
    max_grad_norm=0.5,
    net_arch=(256, 256),
    activation_fn="tanh",
)
DQN_DEFAULTS: dict[str, Any] = dict(
    learning_rate=5e-4,
    buffer_size=100_000,
    learning_starts=5_000,
    batch_size=256,
    tau=1.0,
    gamma=0.9,
    train_freq=1,
    gradient_steps=4,
    target_update_interval=2_000,
    exploration_fraction=0.3,
    exploration_initial_eps=1.0,
    exploration_final_eps=0.05,
    max_grad_norm=10.0,
    net_arch=(256, 256),
    activation_fn="relu",
)
DEFAULTS = {Algo.PPO: PPO_DEFAULTS, Algo.DQN: DQN_DEFAULTS}
# Config fields that override an algorithm hyperparameter (None = the algorithm's default above).
HYPERPARAMETERS = (
    "learning_rate",
    "gamma",
    "batch_size",
    "net_arch",
    "n_steps",
    "n_epochs",
    "gae_lambda",
    "clip_range",
    "ent_coef",
    "buffer_size",
    "learning_starts",
    "train_freq",
    "gradient_steps",
    "target_update_interval",
    "exploration_fraction",
    "exploration_final_eps",
)


@dataclass(frozen=True)
class TrainPolicyConfig:
    """Train a driving policy (stable-baselines3 PPO or DQN) on the batched simulator; writes a run directory."""

    algo: Algo = Algo.PPO
    """RL algorithm."""
    env: str = "drivestack/Highway-v0"
    """Environment id: drivestack/Highway-v0, drivestack/Merge-v0 (highway-env's meta action) or
    drivestack/HighwayDriver-v0, drivestack/MergeDriver-v0 (set-points down to standstill with adaptive cruise
    control, lane features in the observation; docs/policies.md)."""
    num_envs: int | None = None
    """Environments stepped together (None: PPO 128, DQN 32). PPO: the batched simulator steps 128 environments in
    about 1.5x the time of 64 (2 CPU cores), and n_steps x 128 = 4096 samples make one update's rollout. DQN: each
    vector step adds num_envs transitions and does gradient_steps updates, so scale gradient_steps with num_envs."""
    total_timesteps: int | None = None
    """[env steps, summed over environments] training budget (None: PPO 500,000, DQN 200,000); on --resume the
    total to reach, the steps already done included."""
    device: str = "cpu"
    """torch device of the simulator and the networks ("cpu" or "cuda")."""
    threads: int = 1
    """torch CPU threads (0: torch's default, one per core). The tensors here are small, so extra threads add
    synchronisation more than speed; on a 2-core machine with one core busy, 2 threads trained 6x slower than 1."""
    seed: int = 0
    """Random seed (network init, sampling, scenarios); runs are reproducible under a seed on the CPU."""
    run_dir: Path | None = None
    """Run directory (None: runs/train/{algo}-{env name}-{seed}, e.g. runs/train/ppo-Highway-v0-0)."""
    resume: bool = False
    """Continue the run in run_dir from its latest checkpoint (weights, optimizer, step count, DQN replay)."""
    eval_every: int = 50_000
    """[env steps] between evaluations of the deterministic policy (0: only at the end)."""
    eval_episodes: int = 128
    """Episodes per evaluation, run all at once (one per evaluation environment; fixed scenarios, so evaluations
    compare like with like). 128 puts a 10 % collision rate within about +-3 % (one standard error)."""
    checkpoint_every: int = 100_000
    """[env steps] between resumable checkpoints checkpoints/step_<n> (0: only final)."""
    log_every: int = 4_096
    """[env steps] at least this many between two TensorBoard / progress.csv rows."""
    progress: bool = True
    """Show a progress bar."""
    perception_noise: bool = False
    """Train on observations perturbed like the tracker's output (`sim.observation_noise`: position and velocity
    errors and missed tracks by distance band, deterministic under the seed), so the policy is ready for the
    perceived closed loop; evaluations stay on the exact observation. Kinematics observations only."""
    compile: bool = False
    """Fuse the simulator step with torch.compile: on a 2-core CPU the environments step about 2.4x faster at
    128 environments, after a one-time compilation of 30-45 s (needs a C++ compiler). Same results to rounding."""
    max_minutes: float | None = None
    """[min] wall-clock training budget: training stops at it (the partial rollout is dropped) and the final
    evaluation and checkpoint follow; None: train to total_timesteps."""
    learning_rate: float | None = None
    """Adam learning rate (None: PPO 5e-4, DQN 5e-4)."""
    gamma: float | None = None
    """Discount factor per decision (None: 0.9, a horizon of about 10 decisions = 10 s)."""
    batch_size: int | None = None
    """[samples] minibatch size (None: PPO 1024, DQN 256)."""
    net_arch: tuple[int, ...] | None = None
    """Hidden layer widths of the policy / value / Q networks (None: 256 256; tanh for PPO, relu for DQN)."""
    n_steps: int | None = None
    """PPO: [decisions] rollout length per environment; a rollout is n_steps x num_envs samples (None: 32)."""
    n_epochs: int | None = None
    """PPO: passes over each rollout (None: 5)."""
    gae_lambda: float | None = None
    """PPO: GAE lambda (None: 0.95)."""
    clip_range: float | None = None
    """PPO: policy ratio clip (None: 0.2)."""
    ent_coef: float | None = None
    """PPO: entropy bonus coefficient (None: 0.01)."""
    buffer_size: int | None = None
    """DQN: [transitions] replay buffer capacity (None: 100,000)."""
    learning_starts: int | None = None
    """DQN: [env steps] collected before the first update (None: 5,000)."""
    train_freq: int | None = None
    """DQN: [vector steps] between updates; each vector step is num_envs env steps (None: 1)."""
    gradient_steps: int | None = None
    """DQN: gradient steps per update (None: 4, i.e. 4 x 256 samples per 32 new transitions)."""
    target_update_interval: int | None = None
    """DQN: [env steps] between target network copies (None: 2,000)."""
    exploration_fraction: float | None = None
    """DQN: fraction of total_timesteps over which epsilon decays from 1 (None: 0.3)."""
    exploration_final_eps: float | None = None
    """DQN: final epsilon (None: 0.05)."""

    def validate(self) -> TrainPolicyConfig:
        """Check every option (one-line ValueError naming it) before anything is built or written; returns self.

        NaN never passes; counts are integers; sizes and rates have the bounds SB3 and the simulator need.
        """
        Algo(self.algo)
        if self.env not in ENV_CONFIGS:
            raise ValueError(f"unknown env id {self.env!r}; allowed: {', '.join(ENV_CONFIGS)}")
        resolve_device(self.device)
        if self.run_dir is not None:
            check_out_dir(self.run_dir, "--run-dir")
        integers = (  # name, low, high (None: no bound)
            ("num_envs", 1, MAX_NUM_ENVS),
            ("total_timesteps", 1, None),
            ("threads", 0, None),
            ("seed", None, None),
            ("eval_every", 0, None),
            ("eval_episodes", 1, MAX_NUM_ENVS),
            ("checkpoint_every", 0, None),
            ("log_every", 1, None),
            ("batch_size", 2 if Algo(self.algo) == Algo.PPO else 1, None),  # SB3's PPO needs 2 for advantages
            ("n_steps", 1, None),
            ("n_epochs", 1, None),
            ("buffer_size", 1, None),
            ("learning_starts", 0, None),
            ("train_freq", 1, None),
            ("target_update_interval", 1, None),
        )
        for name, low, high in integers:
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), low=low, high=high, integer=True)
        if self.gradient_steps is not None:  # SB3: -1 means as many gradient steps as transitions collected
            check_number("gradient_steps", self.gradient_steps, low=-1, integer=True)
            require(self.gradient_steps != 0, "gradient_steps", ">= 1, or -1 (one per collected step)", 0)
        floats = (  # name, low, low_open, high
            ("max_minutes", 0.0, True, None),
            ("learning_rate", 0.0, True, None),
            ("gamma", 0.0, True, 1.0),
            ("gae_lambda", 0.0, False, 1.0),
            ("clip_range", 0.0, True, None),
            ("ent_coef", 0.0, False, None),
            ("exploration_fraction", 0.0, False, 1.0),
            ("exploration_final_eps", 0.0, False, 1.0),
        )
        for name, low, low_open, high in floats:
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), low=low, low_open=low_open, high=high)
        if self.net_arch is not None:
            for width in self.net_arch:
                check_number("net_arch", width, low=1, high=65_536, integer=True)
        return self


def env_name(env_id: str) -> str:
    return env_id.split("/")[-1]


def hyperparameters(cfg: TrainPolicyConfig) -> dict[str, Any]:
    """The algorithm's SB3 settings: its defaults with the config's overrides (ValueError for a foreign one)."""
    algo = Algo(cfg.algo)
    hyper = dict(DEFAULTS[algo])
    for name in HYPERPARAMETERS:
        value = getattr(cfg, name)
        if value is None:
            continue
        if name not in hyper:
            other = next(a for a in Algo if name in DEFAULTS[a])
            raise ValueError(
                f"{name} is a {other.value} setting, not a {algo.value} one; drop --{name.replace('_', '-')}"
            )
        hyper[name] = tuple(value) if name == "net_arch" else value
    return hyper


def resolve(cfg: TrainPolicyConfig) -> TrainPolicyConfig:
    """Validate `cfg` and fill in every default (num_envs, total_timesteps, run_dir, the algorithm's settings)."""
    cfg.validate()
    algo = Algo(cfg.algo)
    hyper = hyperparameters(cfg)
    filled = {name: hyper[name] for name in HYPERPARAMETERS if name in hyper}
    run_dir = cfg.run_dir or Path("runs/train") / f"{algo.value}-{env_name(cfg.env)}-{cfg.seed}"
    num_envs = NUM_ENVS[algo] if cfg.num_envs is None else cfg.num_envs
    total = TOTAL_TIMESTEPS[algo] if cfg.total_timesteps is None else cfg.total_timesteps
    cfg = dataclasses.replace(cfg, algo=algo, num_envs=num_envs, run_dir=Path(run_dir), total_timesteps=total, **filled)
    assert cfg.num_envs is not None and cfg.total_timesteps is not None
    if algo == Algo.PPO and hyper["batch_size"] > hyper["n_steps"] * cfg.num_envs:
        raise ValueError(
            f"batch_size={hyper['batch_size']} exceeds a rollout of n_steps x num_envs = "
            f"{hyper['n_steps'] * cfg.num_envs} samples; lower --batch-size or raise --n-steps"
        )
    if not 0.0 < hyper["gamma"] <= 1.0:
        raise ValueError(f"gamma={hyper['gamma']}; allowed: 0 < gamma <= 1")
    return cfg


def config_dict(cfg: TrainPolicyConfig) -> dict[str, Any]:
    return to_jsonable(dataclasses.asdict(cfg))


def train_env_config(cfg: TrainPolicyConfig, env_config: EnvConfig | None = None) -> EnvConfig:
    """The env config training steps: the env id's (or `env_config`), with the perception noise if asked for."""
    config = env_config or env_config_for(cfg.env)
    if cfg.perception_noise:
        noise = dataclasses.replace(config.observation.noise, enabled=True)
        config = dataclasses.replace(config, observation=dataclasses.replace(config.observation, noise=noise))
    return config.validate()


def eval_env_config(env_config: EnvConfig) -> EnvConfig:
    """The env config evaluations run: the training one without observation noise (the exact observation)."""
    noise = dataclasses.replace(env_config.observation.noise, enabled=False)
    return dataclasses.replace(env_config, observation=dataclasses.replace(env_config.observation, noise=noise))


def make_train_env(cfg: TrainPolicyConfig) -> SB3DrivingVecEnv:
    """The training VecEnv of `cfg` (defaults resolved)."""
    cfg = resolve(cfg)
    return SB3DrivingVecEnv(
        num_envs=cfg.num_envs or 1, config=train_env_config(cfg), device=cfg.device, seed=cfg.seed, compile=cfg.compile
    )


def build_model(cfg: TrainPolicyConfig, env: SB3DrivingVecEnv) -> BaseAlgorithm:
    """A fresh SB3 model of `cfg` (algorithm defaults with its overrides) on `env`."""
    cfg = resolve(cfg)
    return make_model(Algo(cfg.algo).value, to_jsonable(hyperparameters(cfg)), env, seed=cfg.seed, device=cfg.device)


# ------------------------------------------------------------------------------------------- the run


class TrainingRun:
    """A run directory: its evaluation env, checkpoints and the best evaluation so far."""

    def __init__(self, cfg: TrainPolicyConfig, env_config: EnvConfig, hyper: dict[str, Any]) -> None:
        self.cfg, self.env_config = cfg, env_config
        self.run_dir = Path(cfg.run_dir or ".")
        self.meta = make_meta(
            Algo(cfg.algo).value, cfg.env, env_config, hyper, cfg.seed, num_envs=cfg.num_envs, device=cfg.device
        )
        self.eval_env = SB3DrivingVecEnv(
            num_envs=cfg.eval_episodes,
            config=eval_env_config(env_config),
            device=cfg.device,
            seed=cfg.seed + EVAL_SEED_OFFSET,
        )
        self.last_eval: dict[str, float] | None = None
        self.last_eval_step = -1
        best = self.run_dir / "checkpoints" / "best"
        self.best = read_meta(best).get("eval") if (best / "meta.json").is_file() else None

    def evaluate(self, model: BaseAlgorithm) -> dict[str, float]:
        result = evaluate_model(model, self.eval_env, seed=self.cfg.seed + EVAL_SEED_OFFSET)
        for key in ("return", "collision_rate", "off_road_rate", "mean_speed", "episode_length"):
            model.logger.record(f"eval/{key}", result[key])
        self.last_eval, self.last_eval_step = result, model.num_timesteps
        if better(result, self.best):
            self.best = result
            self.save(model, "best", replay=False)
        return result

    def save(self, model: BaseAlgorithm, name: str, replay: bool = True) -> Path:
        meta = {**self.meta, "eval": self.last_eval if self.last_eval_step == model.num_timesteps else None}
        return save_checkpoint(model, self.run_dir / "checkpoints" / name, meta, replay=replay)


def _resume_config(cfg: TrainPolicyConfig, saved: dict[str, Any], meta: dict[str, Any]) -> TrainPolicyConfig:
    """`cfg` with the resumed run's settings filled in; ValueError naming the first field that contradicts it."""
    where = cfg.run_dir
    for name, ours, theirs in (
        ("algo", Algo(cfg.algo).value, meta["algo"]),
        ("env", cfg.env, meta["env_id"]),
        ("seed", cfg.seed, meta.get("seed")),
    ):
        if ours != theirs:
            raise ValueError(
                f"cannot resume: {where} was trained with {name}={theirs!r}, not {ours!r}; pass "
                f"--{name} {theirs} or a new --run-dir"
            )
    fixed = {"num_envs": meta.get("num_envs", saved.get("num_envs"))}
    fixed.update({k: v for k, v in meta["hyperparameters"].items() if k in HYPERPARAMETERS})
    updates: dict[str, Any] = {}
    for name, theirs in fixed.items():
        ours = getattr(cfg, name)
        theirs = tuple(theirs) if isinstance(theirs, list) else theirs
        if ours is not None and ours != theirs:
            raise ValueError(
                f"cannot resume: {where} was trained with {name}={theirs!r}, not {ours!r}; a resumed "
                f"run keeps its settings (drop --{name.replace('_', '-')} or start a new --run-dir)"
            )
        updates[name] = theirs
    return dataclasses.replace(cfg, **updates)


def _write_config(
    cfg: TrainPolicyConfig, env_config: EnvConfig, hyper: dict[str, Any], resumed_from: Path | None
) -> None:
    run_dir = Path(cfg.run_dir or ".")
    data = {
        "config": config_dict(cfg),
        "hyperparameters": hyper,
        "env_config": env_config_to_dict(env_config),
        "resumed_from": str(resumed_from) if resumed_from else None,
    }
    write_json(run_dir / "config.json", data)


def run_train(cfg: TrainPolicyConfig) -> dict[str, Any]:
    """Train (or resume) a policy as `cfg` says; returns a summary (run_dir, num_timesteps, SPS, final eval)."""
    cfg.validate()  # every option, before anything is built or written
    with using_threads(cfg.threads):  # 0: torch's default; the previous count is restored after
        return _train(cfg)


def _train(cfg: TrainPolicyConfig) -> dict[str, Any]:
    # 1. resolve the config and check the run directory
    run_dir = resolve(cfg).run_dir
    assert run_dir is not None
    resumed_from: Path | None = None
    if cfg.resume:
        resumed_from = latest_checkpoint(run_dir)  # ValueError when there is none
        saved_path = run_dir / "config.json"
        saved = json.loads(saved_path.read_text()).get("config", {}) if saved_path.is_file() else {}
        resumed_meta = read_meta(resumed_from)
        cfg = _resume_config(dataclasses.replace(cfg, run_dir=run_dir), saved, resumed_meta)
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(
            f"run directory {run_dir} already holds a run; pass --resume to continue it or a new --run-dir"
        )
    cfg = resolve(cfg)
    assert cfg.num_envs is not None and cfg.total_timesteps is not None
    # a resumed run goes on with its checkpoint's own env config and settings (the defaults may have moved since)
    if resumed_from is not None:
        env_config, hyper = env_config_from_dict(resumed_meta["env_config"]), resumed_meta["hyperparameters"]
    else:
        env_config, hyper = train_env_config(cfg), to_jsonable(hyperparameters(cfg))

    # 2. environments and model (fresh, or the latest checkpoint with its optimizer, counters and replay)
    env = SB3DrivingVecEnv(
        num_envs=cfg.num_envs, config=env_config, device=cfg.device, seed=cfg.seed, compile=cfg.compile
    )
    run = TrainingRun(cfg, env_config, hyper)
    if resumed_from is not None:
        model, meta = load_checkpoint(
            resumed_from,
            env=env,
            device=cfg.device,
            expect={"algo": run.meta["algo"], "env_id": cfg.env, "observation": run.meta["observation"]},
        )
        if model.num_timesteps >= cfg.total_timesteps:
            raise ValueError(
                f"nothing to do: {resumed_from} is already at {model.num_timesteps} timesteps >= "
                f"--total-timesteps {cfg.total_timesteps}; pass a larger --total-timesteps"
            )
        # fresh scenarios and sampling after the resume point, still reproducible under the seed
        model.set_random_seed(cfg.seed + model.num_timesteps)
    else:
        model = build_model(cfg, env)
    make_run_dir(run_dir, "--run-dir")  # only now: a rejected setting above leaves no empty run directory behind
    _write_config(cfg, env_config, hyper, resumed_from)
    model.set_logger(make_logger(run_dir / "tb"))

    # 3. train; an interrupt saves a resumable checkpoint first
    monitor = TrainingMonitor(cfg, run, desc=f"{Algo(cfg.algo).value} {env_name(cfg.env)}")
    start = time.perf_counter()
    start_steps = model.num_timesteps
    try:
        model.learn(
            cfg.total_timesteps - model.num_timesteps,
            callback=monitor,
            log_interval=None,  # type: ignore[arg-type]
            reset_num_timesteps=resumed_from is None,
            progress_bar=False,
        )
    except KeyboardInterrupt:
        monitor.close()
        model.num_timesteps = monitor.consistent_steps  # the steps the weights have been trained on
        path = run.save(model, f"step_{model.num_timesteps}")
        model.logger.close()
        print(f"\ninterrupted: saved {path}; continue with --resume --run-dir {run_dir}")
        raise
    if monitor.out_of_time:
        model.num_timesteps = monitor.consistent_steps  # the steps the weights have been trained on
        print(f"\nstopped at the {cfg.max_minutes:g} min budget after {model.num_timesteps:,} timesteps")
    elapsed = time.perf_counter() - start
    sps = (model.num_timesteps - start_steps) / max(elapsed, 1e-9)

    # 4. final evaluation and checkpoints
    if run.last_eval_step != model.num_timesteps:
        run.evaluate(model)
    monitor.dump()
    monitor.close()
    run.save(model, "final")
    model.logger.close()
    curve = plot_learning_curve(run_dir, f"{Algo(cfg.algo).value} on {cfg.env}, seed {cfg.seed}")
    ev = run.last_eval
    assert ev is not None
    print(
        f"trained {Algo(cfg.algo).value} on {cfg.env}: {model.num_timesteps:,} timesteps, {sps:,.0f} steps/s; "
        f"eval over {int(ev['episodes'])} episodes: return {ev['return']:.2f}, collision rate "
        f"{ev['collision_rate']:.1%}, mean speed {ev['mean_speed']:.1f} m/s; run written to {run_dir}"
    )
    return {
        "run_dir": str(run_dir),
        "num_timesteps": int(model.num_timesteps),
        "sps": sps,
        "seconds": elapsed,
        "eval": ev,
        "best": run.best,
        "learning_curve": str(curve) if curve else None,
    }
