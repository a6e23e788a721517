"""Train the camera 3D detector from scratch on a nuScenes-format dataset.

One run writes one directory:

    config.json             the resolved training config and the model config
    tb/                     TensorBoard: losses/{total,heatmap,offset,depth,depth_l1,size,rotation},
                            charts/{lr,images_per_s}, val/{mAP,NDS,AP_<class>,mATE,mASE,mAOE,AP2d}
    checkpoints/last.pt     after every epoch: weights, optimizer, epoch and step (what --resume continues from)
    checkpoints/best.pt     the best validation NDS so far
    val/                    the latest validation's submission.json, metrics.json and pr_curves.png
    metrics.json            the final validation and the run's facts (images/s, minutes)

Cameras: `--cameras` (CAM_FRONT by default, `all` for the six) chooses the keyframe images trained on; each image
is a training sample with its own intrinsic and camera-to-ego transform (the network is camera-agnostic:
focal-normalised depth and ray features). Validation with several cameras merges each sample's cameras
(`infer.merge_frames`) and scores the full scene (perception/configs/full_scene_v1.json); CAM_FRONT alone is
scored with camera_front_v1.

CPU efficiency: images are decoded once and kept in memory at the network input size (uint8); augmentation
is batched tensor code on the training device; the network runs channels-last. On CUDA the forward pass runs
under float16 autocast with a gradient scaler. The learning rate warms up linearly, then follows a cosine;
it is a pure function of the step, so a resumed run (even with another --epochs) continues it exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
import tyro

from drivestack.common.artifacts import make_run_dir, write_json
from drivestack.common.host import resolve_device, set_threads
from drivestack.common.nuscenes import open_nuscenes
from drivestack.perception.augment import AugmentConfig, augment
from drivestack.perception.checkpoint import (
    check_compatible,
    check_deeper,
    deepen,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from drivestack.perception.config import CAMERA, Backbone, ModelConfig, resolve_cameras, sort_classes
from drivestack.perception.dataset import (
    CameraFrame,
    FrameCache,
    cache_frames,
    classes_present,
    load_frames,
)
from drivestack.perception.evaluate import FULL_SCENE, default_protocol, evaluate_detections, load_protocol
from drivestack.perception.infer import Detections, decode_outputs, merge_frames, normalize
from drivestack.perception.loss import build_targets, detection_loss
from drivestack.perception.merge import DEFAULT_RADIUS
from drivestack.perception.model import CenterNet3D, count_parameters, load_pretrained_backbone, pretrained_path
from drivestack.perception.sampling import epoch_order, mix_weights, sampling_probabilities

WARMUP_FRACTION = 0.05  # of all steps, linear learning-rate warm-up
FINAL_LR_FRACTION = 0.02  # the cosine ends at this fraction of --lr


@dataclass(frozen=True)
class TrainDetectorConfig:
    """Train the camera 3D detector (CenterNet-style, from scratch) on a nuScenes-format dataset."""

    dataroot: Annotated[tuple[Path, ...], tyro.conf.UseAppendAction] = ()
    """nuScenes-format datasets trained on, mixed (repeat --dataroot; none: the embedded synthetic dataset,
    generated on first use)."""
    mix: tuple[float, ...] | None = None
    """Mixing weights of the datasets, one per --dataroot: the share of training draws from each (None: in
    proportion to their sizes, every image once per epoch)."""
    class_balance: bool = False
    """Class-balanced sampling (CBGS-like): every class (and "no box") gets the same share of each dataset's
    draws (see perception.sampling)."""
    version: str | None = None
    """Table folder under each dataroot (None: the only one there, e.g. v1.0-trainval)."""
    train_split: tuple[str, ...] = ("train",)
    """Split trained on, one for every dataroot or one per dataroot: a name in <version>/splits.json, an official
    nuScenes split or "all"; `<split>:first-half` / `:second-half` for half of each scene in time."""
    val_split: str | None = "val"
    """Split validated on (None: no validation)."""
    val_dataroot: Path | None = None
    """Dataset validated on (None: the first --dataroot)."""
    cameras: tuple[str, ...] = (CAMERA,)
    """Cameras whose keyframe images are trained on: nuScenes channel names or "all" (the six). Validation with
    several merges each sample's cameras and scores the full scene (full_scene_v1)."""
    epochs: int = 30
    """Passes over the training split; on --resume the total to reach."""
    batch_size: int = 16
    """Images per optimisation step."""
    lr: float = 2e-3
    """AdamW peak learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    device: str = "cpu"
    """torch device ("cpu" or "cuda")."""
    threads: int = 2
    """torch CPU threads (0: torch's default)."""
    seed: int = 0
    """Random seed (initialisation, batch order, augmentation)."""
    run_dir: Path | None = None
    """Run directory (None: runs/detector/<dataset folder>-<seed>)."""
    resume: bool = False
    """Continue the run in run_dir from checkpoints/last.pt (weights, optimizer, epoch, step)."""
    init: Path | None = None
    """Fine-tune: start from this detector checkpoint's weights (a .pt, a run directory or release:<name>), with
    its architecture and classes (the architecture options are then not used, except a deeper --blocks, which
    grows it: see perception.checkpoint.deepen), a new optimiser and schedule (None: from scratch, or from the
    pretrained backbone)."""
    val_every: int = 5
    """[epochs] between validations (0: only at the end)."""
    log_every: int = 10
    """[steps] between TensorBoard loss rows."""
    max_minutes: float | None = None
    """[min] wall-clock budget: training stops after the step that crosses it, then validates and saves."""
    classes: tuple[str, ...] | None = None
    """Detection names to detect (None: every one with a box in view in the training split)."""
    # The architecture options below mirror ModelConfig's (flat, so the CLI reads --input-width rather than
    # --model.input-width); their defaults are ModelConfig's, so the two cannot drift apart.
    input_width: int = ModelConfig.input_width
    """[px] network input width (multiple of 32)."""
    input_height: int = ModelConfig.input_height
    """[px] network input height (multiple of 32)."""
    backbone: Backbone = ModelConfig.backbone
    """Backbone: slim (CPU default) or resnet18 (torchvision's, weights=None)."""
    pretrained: str | None = None
    """ImageNet weights for the resnet18 backbone, opt-in: a .pth file of torchvision's resnet18 state dict, or
    torch-cache for <torch hub dir>/checkpoints/resnet18-f37072fd.pth. Never downloads (None: from scratch)."""
    widths: tuple[int, int, int, int] = ModelConfig.widths
    """Channels of the slim backbone's stages."""
    blocks: tuple[int, int, int, int] = ModelConfig.blocks
    """Residual blocks per slim stage (with --init: more than the checkpoint's deepens it, added blocks starting
    as the identity)."""
    neck_channels: int = ModelConfig.neck_channels
    """Channels of the neck and heads."""
    head_stride: int = ModelConfig.head_stride
    """[px] heat-map stride (4 or 8)."""
    max_distance: float = 60.0
    """[m] boxes farther than this (ego xy) are not trained on (the eval range is 50 m for vehicles)."""
    augment: bool = True
    """Flip / scale / photometric augmentation, and RandConv when --aug.randconv-prob > 0 (see perception.augment)."""
    aug: AugmentConfig = AugmentConfig()
    """Augmentation ranges."""
    amp: bool = True
    """float16 autocast on CUDA (ignored on the CPU)."""
    progress: bool = True
    """Show progress bars."""

    def model_config(self, classes: tuple[str, ...]) -> ModelConfig:
        return ModelConfig(
            classes=classes,
            input_width=self.input_width,
            input_height=self.input_height,
            backbone=Backbone(self.backbone),
            widths=tuple(self.widths),  # type: ignore[arg-type]
            blocks=tuple(self.blocks),
            neck_channels=self.neck_channels,  # type: ignore[arg-type]
            head_stride=self.head_stride,
        ).validate()


def dataroots(cfg: TrainDetectorConfig) -> tuple[Path, ...]:
    """The datasets trained on (a single path given programmatically counts as one)."""
    if cfg.dataroot is None:
        return ()
    if isinstance(cfg.dataroot, (str, Path)):
        return (Path(cfg.dataroot),)
    return tuple(Path(d) for d in cfg.dataroot)


def train_splits(cfg: TrainDetectorConfig) -> tuple[str, ...]:
    """The training split of each dataset (one given: the same for all); ValueError for a count mismatch."""
    splits = (cfg.train_split,) if isinstance(cfg.train_split, str) else tuple(cfg.train_split)
    roots = max(1, len(dataroots(cfg)))
    if len(splits) == 1:
        return splits * roots
    if len(splits) != roots:
        raise ValueError(f"train_split={list(splits)}: give one split for all datasets or one per --dataroot ({roots})")
    return splits


def validate_config(cfg: TrainDetectorConfig) -> None:
    train_splits(cfg)
    if cfg.mix is not None:
        mix_weights([1] * len(cfg.mix), cfg.mix)  # finite, >= 0, not all zero
        if len(cfg.mix) != max(1, len(dataroots(cfg))):
            raise ValueError(f"mix={list(cfg.mix)}: give one weight per --dataroot ({max(1, len(dataroots(cfg)))})")
    if cfg.init is not None and cfg.pretrained is not None:
        raise ValueError("init and pretrained both given; --init starts from a whole detector, drop --pretrained")
    if cfg.pretrained is not None:
        if Backbone(cfg.backbone) != Backbone.RESNET18:
            raise ValueError(
                f"pretrained={cfg.pretrained!r} loads torchvision's resnet18 weights; add --backbone resnet18"
            )
        pretrained_path(cfg.pretrained)  # FileNotFoundError naming the file to place, before any work
    for name, low in (("epochs", 1), ("batch_size", 1), ("threads", 0), ("val_every", 0), ("log_every", 1)):
        if getattr(cfg, name) < low:
            raise ValueError(f"{name}={getattr(cfg, name)}; allowed: >= {low}")
    if not cfg.lr > 0 or cfg.weight_decay < 0 or not cfg.max_distance > 0:
        raise ValueError(
            f"lr={cfg.lr}, weight_decay={cfg.weight_decay}, max_distance={cfg.max_distance}: "
            "need lr > 0, weight_decay >= 0, max_distance > 0"
        )
    if cfg.max_minutes is not None and not cfg.max_minutes > 0:
        raise ValueError(f"max_minutes={cfg.max_minutes}; allowed: > 0 (or leave it out)")
    resolve_cameras(cfg.cameras)  # ValueError: an unknown camera name, listing the valid ones
    resolve_device(cfg.device)  # ValueError: an unknown name, or CUDA asked for where there is none
    cfg.aug.validate()
    if not cfg.augment and cfg.aug.randconv_prob > 0:
        raise ValueError(
            f"aug.randconv_prob={cfg.aug.randconv_prob} but --no-augment turns all augmentation off; drop one of them"
        )


def learning_rate(step: int, total: int, peak: float) -> float:
    """Linear warm-up over WARMUP_FRACTION of `total` steps, then a cosine down to FINAL_LR_FRACTION * peak."""
    warm = max(1, int(WARMUP_FRACTION * total))
    if step < warm:
        return peak * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return peak * (FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * t)))


def common_attributes(frames: list[CameraFrame], classes: tuple[str, ...]) -> dict[str, str]:
    """Per class, its most common non-empty attribute in `frames` (what submissions report for it)."""
    counts: dict[str, Counter[str]] = {c: Counter() for c in classes}
    for frame in frames:
        for name, attr in zip(frame.names, frame.attributes):
            if name in counts and attr:
                counts[name][attr] += 1
    return {c: counts[c].most_common(1)[0][0] if counts[c] else "" for c in classes}


@torch.inference_mode()
def detect_cached(
    model: CenterNet3D, cache: FrameCache, batch_size: int, device: torch.device, amp: bool
) -> Detections:
    """Detections of every cached frame (images already at the network input size)."""
    model.eval()
    parts = []
    for start in range(0, len(cache), batch_size):
        sl = slice(start, start + batch_size)
        x = normalize(cache.images[sl].to(device).float().div_(255.0))
        k_in = cache.intrinsic[sl].to(device)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            heat, reg = model(x, k_in)
        parts.append(
            decode_outputs(heat, reg, cache.intrinsic[sl].to(device), cache.cam2ego[sl].to(device), model.cfg).to("cpu")
        )
    model.train()
    return Detections(
        torch.cat([p.boxes for p in parts]),
        torch.cat([p.scores for p in parts]),
        torch.cat([p.labels for p in parts]),
        model.cfg.classes,
    )


def summary_line(metrics: dict[str, Any]) -> str:
    aps = ", ".join(f"{c} {v:.3f}" for c, v in metrics["AP"].items())
    return f"mAP {metrics['mAP']:.3f}, NDS {metrics['NDS']:.3f} (AP {aps}; 2D COCO AP {metrics['coco_2d']['AP']:.3f})"


def _config_dict(cfg: TrainDetectorConfig) -> dict[str, Any]:
    data = dataclasses.asdict(cfg)
    data["backbone"] = Backbone(cfg.backbone).value
    return json.loads(json.dumps(data, default=str))


def run_train(cfg: TrainDetectorConfig) -> dict[str, Any]:
    """Train (or resume) a detector; returns the final validation metrics and the run's facts."""
    validate_config(cfg)
    roots = dataroots(cfg)
    if not roots:
        raise ValueError("dataroot is required here (the drivestack CLI fills in the embedded synthetic dataset)")
    set_threads(cfg.threads)  # 0: torch's default
    device = resolve_device(cfg.device)
    amp = cfg.amp and device.type == "cuda"
    run_dir = Path(cfg.run_dir or Path("runs/detector") / f"{roots[0].name}-{cfg.seed}")
    last_path, best_path = run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "best.pt"
    if cfg.resume and not last_path.is_file():
        raise FileNotFoundError(f"--resume: {last_path} does not exist; start the run without --resume")
    if not cfg.resume and last_path.exists():
        raise FileExistsError(f"{run_dir} already holds a run; continue it with --resume or choose another --run-dir")

    # --- data: read the splits through the devkit (every dataset's), decode images once
    datasets = [open_nuscenes(root, cfg.version) for root in roots]
    cameras = resolve_cameras(cfg.cameras)
    protocol = load_protocol(default_protocol(cameras))
    full_scene = protocol.get("gt_filter") == FULL_SCENE  # several cameras: merged per sample for validation
    per_dataset = [load_frames(n, split, cameras) for n, split in zip(datasets, train_splits(cfg))]
    train_frames = [f for frames in per_dataset for f in frames]
    val_root = Path(cfg.val_dataroot) if cfg.val_dataroot is not None else roots[0]
    nusc = datasets[roots.index(val_root)] if val_root in roots else open_nuscenes(val_root, cfg.version)
    ego_frame = "sample" if full_scene else "camera"
    val_frames = load_frames(nusc, cfg.val_split, cameras, ego_frame) if cfg.val_split else []
    present = classes_present(train_frames)
    classes = sort_classes(cfg.classes) if cfg.classes else sort_classes(present)
    if cfg.classes and len(classes) != len(set(cfg.classes)):
        raise ValueError(f"classes={list(cfg.classes)}: each must be a nuScenes detection name")
    if not classes:
        raise ValueError(f"split {cfg.train_split!r} has no annotated box of a detection class in view of the camera")
    state: dict[str, Any] = load_checkpoint(last_path) if cfg.resume else {}
    init_state: dict[str, Any] = load_checkpoint(cfg.init) if cfg.init is not None and not cfg.resume else {}
    grow = False  # a fine-tuned detector grown deeper (--init with a deeper --blocks)
    if cfg.init is not None:  # fine-tuning (also resumed): the checkpoint's architecture and classes
        model_cfg = ModelConfig.from_dict((init_state or state)["model_config"])
        if cfg.classes and classes != model_cfg.classes:
            raise ValueError(
                f"classes={list(classes)}, but --init {cfg.init} detects {list(model_cfg.classes)}; drop --classes"
            )
        classes = model_cfg.classes
        grow = bool(init_state) and tuple(cfg.blocks) not in (ModelConfig.blocks, model_cfg.blocks)
        if grow:  # a deeper --blocks grows the fine-tuned detector: refused here, before any work, if it cannot
            check_deeper(model_cfg, tuple(cfg.blocks))
    else:
        model_cfg = cfg.model_config(classes)
    if cfg.resume:
        check_compatible(ModelConfig.from_dict(state["model_config"]), model_cfg, str(last_path))
    attributes = common_attributes(train_frames, classes)
    train = cache_frames(train_frames, classes, model_cfg.input_size, cfg.max_distance, cfg.progress)
    probabilities = None  # None: each epoch a permutation of all images (one dataset, or mixed by size)
    if cfg.class_balance or (cfg.mix is not None and len(roots) > 1):
        dataset_index = torch.cat([torch.full((len(f),), d, dtype=torch.long) for d, f in enumerate(per_dataset)])
        labels = train.targets.labels  # (N, M) the boxes trained on, -1 padding
        present = (labels[..., None] == torch.arange(len(classes))).any(dim=1) if cfg.class_balance else None
        mix = mix_weights([len(f) for f in per_dataset], cfg.mix)
        probabilities = sampling_probabilities(dataset_index, mix, present)
    val = (
        cache_frames(val_frames, classes, model_cfg.input_size, cfg.max_distance, cfg.progress) if val_frames else None
    )
    if device.type == "cuda":  # uint8 at the input size is small (~0.45 MB an image): keep it all on the GPU
        train = FrameCache(
            train.images.to(device), train.intrinsic.to(device), train.cam2ego.to(device), train.targets.to(device)
        )

    # --- model and optimiser (restored on --resume)
    torch.manual_seed(cfg.seed)
    model = model_from_checkpoint(state or init_state) if state or init_state else CenterNet3D(model_cfg)
    if grow:
        model = deepen(model, tuple(cfg.blocks))
        model_cfg = model.cfg
    if cfg.pretrained is not None and not state:  # resumed runs carry their weights
        load_pretrained_backbone(model, cfg.pretrained)
    model = model.to(device).to(memory_format=torch.channels_last).train()
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]  # biases and norms
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    if state:
        optimizer.load_state_dict(state["optimizer"])
    epoch, step = int(state.get("epoch", 0)), int(state.get("step", 0))
    best = state.get("best")
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    priors = torch.tensor(model_cfg.size_priors(), device=device)

    from torch.utils.tensorboard import SummaryWriter

    make_run_dir(run_dir, "--run-dir")
    write_json(
        run_dir / "config.json",
        {
            "train": _config_dict(cfg),
            "model": model_cfg.to_dict(),
            "attributes": attributes,
            "num_train": len(train),
            "num_val": len(val) if val else 0,
            "parameters": count_parameters(model),
        },
    )
    writer = SummaryWriter(str(run_dir / "tb"))
    info = {
        "dataroot": str(roots[0]) if len(roots) == 1 else [str(r) for r in roots],
        "mix": None if probabilities is None else mix.tolist(),
        "class_balance": cfg.class_balance,
        "pretrained": cfg.pretrained,
        "init": None if cfg.init is None else str(cfg.init),
        "train_split": cfg.train_split,
        "val_split": cfg.val_split,
        "cameras": list(cameras),
    }

    def validate() -> dict[str, Any] | None:
        nonlocal best
        if val is None:
            return None
        dets = detect_cached(model, val, 2 * cfg.batch_size, device, amp)
        if full_scene:  # the cameras of each sample merged, scored over the full scene
            threshold, radius = float(protocol["score_threshold"]), float(protocol.get("merge_radius", DEFAULT_RADIUS))
            samples, merged = merge_frames(val_frames, dets, threshold, radius)
            metrics = evaluate_detections(
                nusc, samples, merged, attributes, run_dir / "val", protocol, images=(val_frames, dets)
            )
        else:
            metrics = evaluate_detections(nusc, val_frames, dets, attributes, run_dir / "val")
        write_json(run_dir / "val" / "metrics.json", {"epoch": epoch, "step": step, **metrics})
        tags = {
            "val/mAP": metrics["mAP"],
            "val/NDS": metrics["NDS"],
            "val/AP2d": metrics["coco_2d"]["AP"],
            "val/mATE": metrics["tp_errors"]["trans_err"],
            "val/mASE": metrics["tp_errors"]["scale_err"],
            "val/mAOE": metrics["tp_errors"]["orient_err"],
            **{f"val/AP_{c}": v for c, v in metrics["AP"].items()},
        }
        for tag, value in tags.items():
            if value is not None:  # None: a metric the devkit leaves undefined (NaN)
                writer.add_scalar(tag, value, step)
        if best is None or metrics["NDS"] > best["NDS"]:
            best = {"NDS": metrics["NDS"], "mAP": metrics["mAP"], "epoch": epoch, "step": step}
            save_checkpoint(
                best_path,
                model,
                attributes,
                epoch=epoch,
                step=step,
                best=best,
                info={**info, "val": {k: metrics[k] for k in ("mAP", "NDS", "AP")}},
            )
        return metrics

    # --- training loop
    start, images_seen = time.perf_counter(), 0
    metrics: dict[str, Any] | None = None
    out_of_time = False
    pbar = None
    if cfg.progress:
        from tqdm import tqdm

        pbar = tqdm(
            total=total_steps,
            initial=min(step, total_steps),
            unit="step",
            dynamic_ncols=True,
            desc=f"detector {'/'.join(classes)}",
        )
    while epoch < cfg.epochs and not out_of_time:
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)  # per-epoch stream: resumable
        order = epoch_order(len(train), gen, probabilities)
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            idx = idx.to(train.images.device)
            images = train.images[idx].to(device, non_blocking=True)
            targets = train.targets.index(idx).to(device)
            if cfg.augment:
                x, targets, k_in = augment(images, targets, train.intrinsic[idx].to(device), cfg.aug, gen)
            else:
                x, k_in = images.float().div_(255.0), train.intrinsic[idx].to(device)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total_steps, cfg.lr)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                heat, reg = model(normalize(x), k_in)
            dense = build_targets(targets, priors, model_cfg.output_size, model_cfg.head_stride)
            loss, terms = detection_loss(heat, reg, dense)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            images_seen += len(idx)
            if step % cfg.log_every == 0:  # note: .item() is a device sync, so only every log_every steps
                if not math.isfinite(loss.item()):
                    raise ValueError(f"the loss became {loss.item()} by step {step}; lower --lr")
                writer.add_scalar("losses/total", loss.item(), step)
                for name, value in terms.items():
                    writer.add_scalar(f"losses/{name}", value.item(), step)
                writer.add_scalar("charts/lr", optimizer.param_groups[0]["lr"], step)
                writer.add_scalar("charts/images_per_s", images_seen / (time.perf_counter() - start), step)
            if pbar is not None:
                pbar.update(1)
                if step % cfg.log_every == 0:
                    pbar.set_postfix_str(f"epoch {epoch + 1}/{cfg.epochs}, loss {loss.item():.3f}", refresh=False)
            if cfg.max_minutes is not None and time.perf_counter() - start > 60.0 * cfg.max_minutes:
                out_of_time = True
                break
        epoch += 1 if not out_of_time else 0
        if not out_of_time:
            save_checkpoint(
                last_path,
                model,
                attributes,
                optimizer=optimizer.state_dict(),
                epoch=epoch,
                step=step,
                best=best,
                info=info,
            )
        if cfg.val_every and epoch % cfg.val_every == 0 and epoch < cfg.epochs and not out_of_time:
            metrics = validate()
            if pbar is not None and metrics is not None:
                pbar.write(f"epoch {epoch}: {summary_line(metrics)}")
    if pbar is not None:
        pbar.close()
    if out_of_time:  # the partial epoch's weights are kept; its epoch count is not advanced
        save_checkpoint(
            last_path, model, attributes, optimizer=optimizer.state_dict(), epoch=epoch, step=step, best=best, info=info
        )
    metrics = validate()
    if not best_path.exists():  # no validation split: the last weights are the best we know
        save_checkpoint(best_path, model, attributes, epoch=epoch, step=step, best=best, info=info)
    writer.close()
    minutes = (time.perf_counter() - start) / 60.0
    result = {
        "run_dir": str(run_dir),
        "epoch": epoch,
        "step": step,
        "minutes": minutes,
        "train_images_per_s": images_seen / max(60.0 * minutes, 1e-9),
        "best": best,
        "final": {k: metrics[k] for k in ("mAP", "NDS", "AP", "tp_errors", "coco_2d")} if metrics else None,
    }
    write_json(run_dir / "metrics.json", result)
    line = summary_line(metrics) if metrics else "no validation split"
    print(
        f"trained {step} steps ({epoch} epochs, {minutes:.1f} min, {result['train_images_per_s']:.1f} images/s): "
        f"{line}; checkpoints in {run_dir / 'checkpoints'}"
    )
    return result
