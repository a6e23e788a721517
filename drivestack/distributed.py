"""Ray for the work that outgrows one process: `data make --ray`, `eval policy --ray`, `train policy --sweep`.

Ray is an optional extra (`pip install -e ".[ray]"`); nothing here imports it until a command asks for it, and
without it `--ray` is one line naming the extra. The address a user gives (`--ray [ADDRESS]`):

    (none) / local       start a Ray instance on this machine for the command, stopped after it
    auto                 connect to the cluster this machine belongs to (`ray start --head` / `--address`)
    ray://host:10001     connect through the Ray Client of a remote head node
    host:6379            connect to the cluster whose head's GCS listens there (from a node of the cluster)

The units of work are plain functions of their arguments (`sim.nuscenes_export.export_shard`: one batch of
scenes; `cli.eval_policy.evaluate_spec`: a range of episode ids), so a task that runs twice gives the same
result, and a task lost with its worker is simply run again (`max_retries`); results are collected as tasks
finish, so a worker lost later does not take finished work with it. Output folders must be on a filesystem
every node sees at the same path (docs/ray.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tqdm import tqdm
from tyro.constructors import PrimitiveConstructorSpec

RAY_EXTRA = 'pip install -e ".[ray]"'  # from a clone; from PyPI: pip install "drivestack[ray]"
LOCAL = "local"  # --ray without an address
MAX_RETRIES = 3  # times a task is run again after its worker died (or it raised OSError)
CANCEL_WAIT = 10.0  # [s] how long an interrupted command waits for cancelled tasks to stop
CONNECT_TIMEOUT = 10.0  # [s] to reach a head node's port before Ray is asked to connect


def _address(args: list[str]) -> str:
    if len(args) > 1:
        raise ValueError(f"--ray takes at most one address, got {' '.join(args)}")
    return check_address(args[0]) if args else LOCAL


RAY_OPTION = PrimitiveConstructorSpec(
    nargs="*",
    metavar="[ADDRESS]",
    instance_from_str=_address,
    is_instance=lambda value: isinstance(value, str),
    str_from_instance=lambda value: [] if value == LOCAL else [value],
)
"""tyro spec of a `ray: Annotated[str | None, RAY_OPTION] = None` config field: `--ray` alone gives "local",
`--ray ADDRESS` the address (checked); without --ray the field stays None."""


def import_ray(option: str = "--ray") -> Any:
    """The `ray` module; without the extra a ValueError whose one line names it."""
    try:
        import ray
    except ImportError:
        raise ValueError(
            f"{option} needs Ray, which is not installed: install the extra with {RAY_EXTRA} "
            '(or pip install "drivestack[ray]"), or drop --ray'
        ) from None
    return ray


def check_address(address: str, option: str = "--ray") -> str:
    """`address` if it is one `ray.init` takes (local, auto, ray://host:port or host:port), else ValueError."""
    if address in (LOCAL, "auto") or address.startswith("ray://"):
        return address
    host, sep, port = address.rpartition(":")
    if sep and host and port.isdigit():
        return address
    raise ValueError(
        f"{option} {address!r} is not a Ray address; allowed: nothing (a local instance), auto (this machine's "
        "cluster), ray://HOST:10001 (Ray Client) or HOST:6379 (a head node's GCS)"
    )


@contextlib.contextmanager
def ray_session(address: str, num_cpus: int | None = None) -> Iterator[Any]:
    """Ray, connected for the duration of the block (yields the `ray` module).

    A session that is already up (a test's fixture, a notebook) is used as it is and left running; otherwise
    `address` (see the module docstring) is started or connected to, and shut down after.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    check_address(address)
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address == LOCAL:  # a new instance, even where `ray start` runs one that ray.init() would join
        kwargs.update(address="local", num_cpus=num_cpus, include_dashboard=False)
    else:
        _check_listening(address)
        kwargs["address"] = address
    handlers = _signal_handlers()
    try:
        ray.init(**kwargs)
    except ConnectionError as err:  # refused, or the head wants a token this process does not send
        hint = ""
        if address != "auto" and not os.environ.get("RAY_AUTH_MODE"):
            hint = (
                "; if the cluster uses Ray's token authentication (its default), set RAY_AUTH_MODE=token and copy "
                "the head node's ~/.ray/auth_token to this machine (docs/ray.md)"
            )
        raise ValueError(f"--ray {address}: cannot connect ({' '.join(str(err).split())[:200]}){hint}") from None
    finally:
        # ray.init installs its own SIGTERM / SIGINT handlers in the driver (SIGTERM: dump a stack and abort);
        # ours turn both into KeyboardInterrupt, which cancels the tasks and removes temporary folders
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_listening(address: str) -> None:
    """ValueError unless something accepts TCP connections at a HOST:PORT or ray://HOST:PORT address (Ray itself
    retries an unreachable head for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # auto, or a form Ray checks itself
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as err:
        raise ValueError(
            f"--ray {address}: nothing answers there ({err.strerror or err}); start the head node with "
            "`ray start --head` (see docs/ray.md), or check the host and port"
        ) from None


def _signal_handlers() -> dict[int, Any]:
    """The Python handlers of SIGTERM and SIGINT (none off the main thread, where they cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    return {signum: handler for signum, handler in handlers.items() if handler is not None}


def episode_ranges(episodes: int, parts: int) -> list[tuple[int, int]]:
    """(first episode, count) of `parts` consecutive ranges covering 0..episodes-1 (sizes differ by at most 1)."""
    parts = max(1, min(parts, episodes))
    bounds = [episodes * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1] - bounds[i]) for i in range(parts)]


def warn_random_split(policies: Sequence[str]) -> None:
    """Warn (once per call) when `random` is among the policies whose episodes are split over workers."""
    if "random" in policies:
        warnings.warn(
            "--ray: the random policy draws every environment's maneuver from one generator, so its figures depend "
            "on how the episodes are split (the other policies' do not)",
            stacklevel=3,
        )


def cluster_cpus() -> int:
    """CPUs of the connected Ray cluster (at least 1)."""
    ray = import_ray()
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def run_tasks(
    fn: Callable[..., Any],
    arguments: Sequence[tuple],
    desc: str,
    unit: str = "task",
    num_cpus: float = 1.0,
    max_retries: int = MAX_RETRIES,
    progress: bool = True,
) -> list[Any]:
    """`[fn(*args) for args in arguments]`, each call a Ray task; results in the order of `arguments`.

    A task whose worker dies (or that raises OSError: a flaky shared filesystem) runs again, up to `max_retries`
    times; results are fetched as tasks finish, so later failures never lose them. A task's ValueError or
    OSError is re-raised as itself (one line in the CLI). An interrupt cancels the tasks still running and waits
    up to CANCEL_WAIT s for them to stop (they may be writing into a folder the caller is about to delete).
    """
    ray = import_ray()
    remote = ray.remote(fn).options(num_cpus=num_cpus, max_retries=max_retries, retry_exceptions=[OSError])
    refs = [remote.remote(*args) for args in arguments]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[Any] = [None] * len(refs)
    pending = list(refs)
    try:
        with tqdm(total=len(refs), desc=desc, unit=unit, disable=not progress) as bar:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    results[index[ref]] = _get(ray, ref)
                    bar.update(1)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        with contextlib.suppress(Exception):
            ray.wait(pending, num_returns=len(pending), timeout=CANCEL_WAIT)
        raise
    return results


def _get(ray: Any, ref: Any) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, (ValueError, OSError)):  # a user's mistake seen by a worker: its own one line
            raise err.cause from None
        raise


def warn_few_tasks(num_tasks: int, what: str, fix: str) -> None:
    """A one-line warning when the cluster has more CPUs than there are tasks to keep them busy."""
    cpus = cluster_cpus()
    if num_tasks < cpus:
        warnings.warn(f"--ray: {num_tasks} {what} for {cpus} CPUs, so some stay idle; {fix}", stacklevel=2)
