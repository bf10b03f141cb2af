"""The Hugging Face families on a GPU with mixed precision: step time, prediction time, peak GPU memory.

    python benchmarks/gpu_check.py                 # CUDA: real-size architectures (random weights)
    python benchmarks/gpu_check.py --quick         # tiny configs, a few steps (a CPU: under a minute)
    python benchmarks/gpu_check.py --families grounding-dino clip --steps 30 --batch 2

Nothing is downloaded. Each family's checkpoint is built from its transformers config (``--size real``:
the architecture of the Hub checkpoint named in the table, with random weights; ``--size tiny``: the
test-sized models) and saved to a folder with an image processor and tokenizer, which is then opened
exactly as a Hub name would be. For each family a ``LiveSession`` (``TrainerConfig(device, amp)``) gets
synthetic 640×480 images, labels are submitted, training runs ``--steps`` steps, and predictions are
timed with training stopped. The correction mode (SAM) is timed through a ``StreamSession``: encoding a
frame, an adapter update on a correction, a prediction.

Printed: family, size, device, amp, batch, training step median, prediction p50, and the peak of
``torch.cuda.max_memory_allocated`` over the family's whole run (weights, optimizer, the trainer's
rollback snapshot, activations). On a machine without CUDA it runs the same on the CPU and says
"no GPU". Random weights train and predict at the speed and memory of real ones; their predictions
mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import string
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the Hub

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FAMILIES = ("grounding-dino", "mask2former", "segformer", "clip", "sam")
#: the Hub checkpoint whose architecture ``--size real`` builds (random weights)
HUB = {
    "grounding-dino": "IDEA-Research/grounding-dino-tiny",
    "mask2former": "facebook/mask2former-swin-tiny-coco-instance",
    "segformer": "nvidia/mit-b0",
    "clip": "openai/clip-vit-base-patch32",
    "sam": "facebook/sam-vit-base",
}
TASKS = {"grounding-dino": "detection", "mask2former": "segmentation", "segformer": "segmentation",
         "clip": "classification", "sam": "segmentation"}
CLASSES = ["red blood cell", "white blood cell", "platelet"]
H, W = 480, 640


# --------------------------------------------------------------------------------- checkpoints
def _processor(name: str, **kw: Any) -> Any:
    import transformers as T

    cls = getattr(T, name + "Pil", None) or getattr(T, name)  # transformers 5: "...Pil" needs no torchvision
    return cls(**kw)


def _bert_tokenizer(vocab_size: int) -> Any:
    """A WordPiece vocabulary with BERT's ids for [CLS], [SEP], "." and "?" (Grounding DINO hard-codes
    them) and the class words: the prompt tokenizes as it would with bert-base-uncased's vocabulary."""
    import transformers as T

    vocab = [f"[unused{i}]" for i in range(vocab_size)]
    for i, tok in {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1012: ".",
                   1029: "?"}.items():
        vocab[i] = tok
    words = sorted({w for c in CLASSES for w in c.split()})
    vocab[200 : 200 + len(words)] = words
    return T.BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})


def _clip_tokenizer() -> Any:
    """Character-level BPE (no merges): every word splits into letters, which is all CLIP needs here."""
    import transformers as T

    chars = [*string.ascii_lowercase, *string.digits, "'", "-", "."]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars + [c + "</w>" for c in chars]:
        vocab[c] = len(vocab)
    return T.CLIPTokenizer(vocab=vocab, merges=[])


def build_checkpoint(family: str, size: str, folder: Path) -> Path:
    """Save a random ``family`` checkpoint (config, weights, processor, tokenizer) into ``folder``."""
    import torch
    import transformers as T

    torch.manual_seed(0)
    real = size == "real"
    swin = dict(image_size=64, embed_dim=8, depths=[1] * 4, num_heads=[1] * 4, window_size=4)
    if family == "grounding-dino":
        if real:  # the config's defaults are grounding-dino-tiny: Swin-T, BERT-base, 900 queries
            cfg = T.GroundingDinoConfig()
            extras = [_processor("GroundingDinoImageProcessor"), _bert_tokenizer(cfg.text_config.vocab_size)]
        else:
            cfg = T.GroundingDinoConfig(
                backbone_config=T.SwinConfig(**swin, out_indices=[2, 3, 4]),
                text_config=T.BertConfig(vocab_size=1100, hidden_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, intermediate_size=32),
                num_queries=20, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                d_model=32, encoder_attention_heads=2, decoder_attention_heads=2, max_text_len=32,
                encoder_n_points=2, decoder_n_points=2)
            extras = [_processor("GroundingDinoImageProcessor", size={"shortest_edge": 64, "longest_edge": 96}),
                      _bert_tokenizer(1100)]
        model = T.GroundingDinoForObjectDetection(cfg)
    elif family == "mask2former":
        if real:  # Swin-T backbone; the COCO instance checkpoints resize to 384 x 384
            cfg = T.Mask2FormerConfig(backbone_config=T.SwinConfig(
                embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
                out_features=["stage1", "stage2", "stage3", "stage4"]), num_labels=80)
            proc = _processor("Mask2FormerImageProcessor", size={"height": 384, "width": 384})
        else:
            cfg = T.Mask2FormerConfig(
                backbone_config=T.SwinConfig(**swin, out_features=["stage1", "stage2", "stage3", "stage4"]),
                feature_size=32, mask_feature_size=32, hidden_dim=32, encoder_feedforward_dim=32, encoder_layers=1,
                decoder_layers=2, num_attention_heads=2, dim_feedforward=32, num_queries=10, train_num_points=256)
            proc = _processor("Mask2FormerImageProcessor", size={"shortest_edge": 64, "longest_edge": 96})
        model, extras = T.Mask2FormerForUniversalSegmentation(cfg), [proc]
    elif family == "segformer":
        if real:  # the defaults are MiT-b0
            cfg = T.SegformerConfig()
            proc = _processor("SegformerImageProcessor", size={"height": 512, "width": 512})
        else:
            cfg = T.SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                                    patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2],
                                    mlp_ratios=[2, 2], decoder_hidden_size=16)
            proc = _processor("SegformerImageProcessor", size={"height": 64, "width": 64})
        model, extras = T.SegformerForSemanticSegmentation(cfg), [proc]
    elif family == "clip":
        tok = _clip_tokenizer()
        if real:  # the defaults are ViT-B/32
            cfg = T.CLIPConfig()
            proc = _processor("CLIPImageProcessor")
        else:
            cfg = T.CLIPConfig(
                text_config=dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, max_position_embeddings=64, bos_token_id=0,
                                 eos_token_id=1, pad_token_id=1),
                vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, image_size=32, patch_size=8),
                projection_dim=16)
            proc = _processor("CLIPImageProcessor", size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
        model, extras = T.CLIPModel(cfg), [proc, tok]
    elif family == "sam":
        if real:  # the defaults are ViT-B
            cfg = T.SamConfig()
            proc = _processor("SamImageProcessor")
        else:
            cfg = T.SamConfig(
                vision_config=dict(hidden_size=16, output_channels=16, num_hidden_layers=1, num_attention_heads=2,
                                   image_size=64, patch_size=8, window_size=4, global_attn_indexes=[0],
                                   num_pos_feats=8, mlp_dim=32),
                prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=4),
                mask_decoder_config=dict(hidden_size=16, mlp_dim=32, num_hidden_layers=2, num_attention_heads=2,
                                         iou_head_hidden_dim=16))
            proc = _processor("SamImageProcessor", size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})
        model, extras = T.SamModel(cfg), [proc]
    else:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    model.save_pretrained(str(folder))
    for extra in extras:
        extra.save_pretrained(str(folder))
    return folder


# ----------------------------------------------------------------------------------------- data
def synthetic(n: int, task: str, seed: int = 0) -> tuple[list[np.ndarray], list[Any]]:
    """640×480 images of 3-6 coloured rectangles on noise; the truth as the task wants it."""
    from livetrain_widgets import Annotation

    rng = np.random.default_rng(seed)
    images, truth = [], []
    for i in range(n):
        img = rng.integers(0, 80, (H, W, 3), dtype=np.uint8)
        k = int(rng.integers(3, 7))
        masks = np.zeros((k, H, W), bool)
        labels = rng.integers(0, len(CLASSES), k)
        for j in range(k):
            y, x = int(rng.integers(0, H - 120)), int(rng.integers(0, W - 120))
            h, w = int(rng.integers(30, 120)), int(rng.integers(30, 120))
            masks[j, y : y + h, x : x + w] = True
            img[masks[j]] = (60 + 80 * labels[j], 200 - 60 * labels[j], 120)
        ann = Annotation.from_masks(masks, labels)
        if task == "detection":
            ann = Annotation(W, H, boxes=ann.boxes, labels=ann.labels)
        elif task == "classification":
            ann = Annotation(W, H, category=i % len(CLASSES))
        images.append(img)
        truth.append(ann)
    return images, truth


# ------------------------------------------------------------------------------------- running
def _reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_mib(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None


async def check_family(family: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch

    from livetrain_widgets import LiveSession, SessionConfig, TrainerConfig

    task = TASKS[family]
    t0 = time.perf_counter()
    folder = build_checkpoint(family, args.size, work / "checkpoints" / family)
    built = time.perf_counter() - t0
    _reset_peak(args.device)
    config = SessionConfig(trainer=TrainerConfig(device=args.device, amp=args.amp, batch_size=args.batch, lr=1e-4,
                                                 plateau=False, checkpoint_every_s=1e9))
    session = LiveSession(work / "projects" / family, task, CLASSES, model=str(folder), config=config)
    try:
        params = sum(p.numel() for p in session.trainer.model.parameters())
        trained = sum(p.numel() for p in session.trainer.model.parameters() if p.requires_grad)
        images, truth = synthetic(args.labeled + 2, task)
        ids = session.add_images(images)
        await session.start()
        for image_id, ann in zip(ids[: args.labeled], truth[: args.labeled], strict=True):
            await session.submit(image_id, ann)
        await session.wait_steps(2, timeout=args.timeout)  # the first steps allocate and tune: not timed
        done = await session.wait_steps(args.steps, timeout=args.timeout)
        state = session.state
        if state.error:
            raise RuntimeError(f"training failed: {state.error}")
        step_s = list(session.trainer._step_seconds)[-done:] if done else []
        await session.trainer.stop()  # predictions timed alone
        pred_ms = []
        for _ in range(args.predictions):
            p0 = time.perf_counter()
            pred = await session.predict(ids[-1], threshold=0.0)
            pred_ms.append((time.perf_counter() - p0) * 1000)
        ann = pred.annotation
        assert (ann.width, ann.height) == (W, H), (ann.width, ann.height)
        if task == "classification":
            assert ann.category_scores is not None and len(ann.category_scores) == len(CLASSES)
        elif task == "segmentation":
            assert ann.masks is not None and ann.masks.shape == (len(ann), H, W)
        else:
            assert ann.boxes.shape == (len(ann), 4)
        amp_dtype = str(session.trainer._amp_dtype).replace("torch.", "") if session.trainer.amp else None
        return {"family": family, "hub": HUB[family], "size": args.size, "device": args.device,
                "amp": bool(session.trainer.amp), "amp_dtype": amp_dtype, "batch": args.batch,
                "params_m": params / 1e6, "trained_m": trained / 1e6, "steps": done,
                "step_s_median": float(np.median(step_s)) if step_s else None,
                "predict_ms_p50": float(np.median(pred_ms)), "peak_mib": _peak_mib(args.device), "build_s": built}
    finally:
        await session.close()
        del session
        torch.cuda.empty_cache() if args.device == "cuda" else None


def check_sam(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The correction mode: encode a frame, correct it (an adapter update), predict the next frame."""
    import torch

    from livetrain_widgets import AdapterConfig, StreamSession, create_stream_model
    from livetrain_widgets.engine.stream import frame_quality

    t0 = time.perf_counter()
    folder = build_checkpoint("sam", args.size, work / "checkpoints" / "sam")
    built = time.perf_counter() - t0
    _reset_peak(args.device)
    adapter = AdapterConfig(epochs=10) if args.quick else AdapterConfig()  # the paper's 40 at most, or 10
    model = create_stream_model(str(folder), task="segmentation", classes=["object"], adapter=adapter,
                                device=args.device)
    images, truth = synthetic(3 if args.quick else args.labeled + 2, "segmentation", seed=1)
    targets = [type(a).from_masks(a.masks[:1], [0]) for a in truth]  # one object per frame
    stream = StreamSession(model, images)
    stream.set_box(targets[0].boxes[0])
    encode_ms, update_s, predict_ms = [], [], []
    for target in targets:
        p0 = time.perf_counter()
        pred = stream.prediction().annotation  # encodes the frame once, then predicts
        encode_ms.append((time.perf_counter() - p0) * 1000)
        assert pred.masks is not None and pred.masks.shape[1:] == (H, W)
        p0 = time.perf_counter()
        stream.repredict()  # a prediction alone, on the cached encoding
        predict_ms.append((time.perf_counter() - p0) * 1000)
        if frame_quality(pred, target) < 0.75:
            rec = stream.correct(target)
            update_s.append(rec.update.seconds)
        else:
            stream.accept()
        stream.set_box(target.boxes[0])  # frames here are unrelated: give each its own box
    params = sum(p.numel() for p in model.parameters())
    result = {"family": "sam", "hub": HUB["sam"], "size": args.size, "device": args.device, "amp": False,
              "amp_dtype": None, "batch": 1, "params_m": params / 1e6,
              "trained_m": model.num_adapter_parameters() / 1e6,
              "steps": len(update_s), "step_s_median": float(np.median(update_s)) if update_s else None,
              "predict_ms_p50": float(np.median(predict_ms)), "encode_ms_p50": float(np.median(encode_ms)),
              "peak_mib": _peak_mib(args.device), "build_s": built}
    del stream, model
    torch.cuda.empty_cache() if args.device == "cuda" else None
    return result


def format_table(rows: list[dict[str, Any]], gpu_name: str | None) -> str:
    def f(x: float | None, fmt: str) -> str:
        return "–" if x is None else format(x, fmt)

    def count(millions: float) -> str:
        return f"{millions:.1f} M" if millions >= 1 else f"{millions * 1e3:.1f} K"

    head = ["family", "size", "params", "trained", "device", "amp", "batch", "step median", "predict p50",
            "peak GPU memory"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        step = f(r["step_s_median"], ".3f") + " s" + (" (adapter update)" if r["family"] == "sam" else "")
        amp = (r["amp_dtype"] or "on") if r["amp"] else "off"
        mem = f"{r['peak_mib']:.0f} MiB" if r["peak_mib"] is not None else "no GPU"
        lines.append("| " + " | ".join([
            r["family"], r["size"], count(r["params_m"]), count(r["trained_m"]), r["device"], amp,
            str(r["batch"]), step, f(r["predict_ms_p50"], ".0f") + " ms", mem]) + " |")
    where = f"GPU: {gpu_name}" if gpu_name else "no GPU: ran on the CPU"
    return where + "\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny models and a few steps (a CPU: under a minute)")
    p.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    p.add_argument("--size", choices=("tiny", "real"), default=None,
                   help="real-size architectures (default on CUDA) or the tests' tiny ones (default on a CPU)")
    p.add_argument("--device", choices=("cuda", "cpu"), default=None)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (default: on for CUDA)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=None, help="timed training steps (default 20; --quick 3)")
    p.add_argument("--labeled", type=int, default=4, help="labeled images (SAM: frames)")
    p.add_argument("--predictions", type=int, default=None, help="timed predictions (default 10; --quick 3)")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)

    import torch

    have_cuda = torch.cuda.is_available()
    args.device = args.device or ("cuda" if have_cuda else "cpu")
    if args.device == "cuda" and not have_cuda:
        p.error("--device cuda, but torch.cuda.is_available() is False")
    args.amp = args.device == "cuda" if args.amp is None else args.amp
    args.size = args.size or ("tiny" if args.quick or args.device == "cpu" else "real")
    args.steps = args.steps or (3 if args.quick else 20)
    args.predictions = args.predictions or (3 if args.quick else 10)
    if args.device == "cpu" and args.size == "tiny":
        # tiny models gain nothing from threads, and on a busy 2-core machine OpenMP's spinning threads made
        # a SAM adapter update 20x slower (the tests pin one thread for the same reason)
        torch.set_num_threads(1)
    gpu_name = torch.cuda.get_device_name(0) if args.device == "cuda" else None
    if not have_cuda:
        print("no GPU (torch.cuda.is_available() is False): running on the CPU", flush=True)
    import transformers

    transformers.logging.set_verbosity_error()  # the load report of re-initialised class heads, every time
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # peft asks transformers 5

    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        for family in args.families:
            t0 = time.perf_counter()
            work = Path(tmp) / family
            row = check_sam(args, work) if family == "sam" else asyncio.run(check_family(family, args, work))
            rows.append(row)
            print(f"{family}: done in {time.perf_counter() - t0:.1f} s", flush=True)
    print(format_table(rows, gpu_name))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"gpu": gpu_name, "torch": torch.__version__, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
