"""How Shapes learned, in pictures: the same prompts and starting noise at checkpoints of its training (lesson 9).

The training command paints a fixed sheet every `--eval-every` steps (`quick_eval.py`:
24 prompts, 20 DDIM steps, guidance 7.5, one generator seeded 0 for the whole sheet, so
picture i starts from the same noise at every checkpoint) into `<out>/progress/`. This
command keeps a few of those prompts at a few checkpoints, small enough for the
repository:

    python -m services.shapes checkpoints --progress <run>/progress --out services/shapes/checkpoints

It writes `checkpoints.png` (one row per prompt, one column per checkpoint, 64-pixel
pictures) and `checkpoints.json` (the steps, the captions, how the run was made). The
folder sits beside the model, not in it, so the model's revision does not change.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from services.common import shapes_data as data

SIZE = 64
SHEET_PROMPTS, SHEET_ROWS = 24, 4  # quick_eval.py's sheet: 24 pictures in 4 rows
DEFAULT_PROMPTS = (1, 9, 16, 18)  # of data.evaluation_prompts(24, seed=1)
DEFAULT_STEPS = (100, 200, 300, 500, 1000, 2000, 3000)
CHECKPOINTS_DIR = Path(__file__).parent / "checkpoints"
FINISHED = 99_999  # the finished model's sheet, painted beside the run's


def picture_at(sheet: np.ndarray, index: int) -> np.ndarray:
    """Picture `index` of a quick-eval sheet (row-major, 6 to a row)."""
    per_row = SHEET_PROMPTS // SHEET_ROWS
    row, column = divmod(index, per_row)
    return sheet[row * SIZE : (row + 1) * SIZE, column * SIZE : (column + 1) * SIZE]


def paint_finished(model: Path, folder: Path) -> Path:
    """The same sheet painted by a finished model (the shipped one): its path in `folder`."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from services.shapes.quick_eval import QuickEval

    vae = AutoencoderKL.from_pretrained(model / "vae", torch_dtype=torch.float32).eval()
    unet = UNet2DConditionModel.from_pretrained(model / "unet", torch_dtype=torch.float32).eval()
    text_encoder = CLIPTextModel.from_pretrained(model / "text_encoder", dtype=torch.float32).eval()
    QuickEval(vae, CLIPTokenizer.from_pretrained(model / "tokenizer"), folder)(unet, text_encoder, FINISHED)
    return folder / f"step-{FINISHED:05d}.png"


def keep(progress: Path, out: Path, prompts: tuple[int, ...], steps: tuple[int, ...], made_by: str,
         finished: Path | None = None, finished_steps: int = 0) -> Path:  # fmt: skip
    """Cut the chosen prompts at the chosen steps out of the run's sheets (and a finished model's); the grid's path."""
    captions = [s.caption for s in data.evaluation_prompts(SHEET_PROMPTS, seed=1)]
    sheets = {s: progress / f"step-{s:05d}.png" for s in steps if (progress / f"step-{s:05d}.png").is_file()}
    if not sheets:
        raise SystemExit(f"no sheets for steps {steps} in {progress}")
    if finished is not None:
        sheets[finished_steps] = finished
    found = list(sheets)
    grid = np.full((SIZE * len(prompts), SIZE * len(found), 3), 255, dtype=np.uint8)
    for column, step in enumerate(found):
        sheet = np.asarray(Image.open(sheets[step]).convert("RGB"))
        for row, index in enumerate(prompts):
            grid[row * SIZE : (row + 1) * SIZE, column * SIZE : (column + 1) * SIZE] = picture_at(sheet, index)
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(out / "checkpoints.png", optimize=True)
    record = {
        "steps": found,
        "captions": [captions[i] for i in prompts],
        "grid": "one row per caption, one column per step; 64 x 64 pixels each",
        "painted": "20 DDIM steps at guidance 7.5; the same starting noise for a caption at every step",
        "made_by": made_by,
        "finished_step": finished_steps if finished is not None else None,  # the last column: the finished model
    }
    (out / "checkpoints.json").write_text(json.dumps(record, indent=2))
    return out / "checkpoints.png"
