"""An offline digits pair with a real domain gap.

``digits_printed`` plays the part of DANN's Syn Numbers: digits rendered from the TrueType fonts
that ship with matplotlib, varied in font, size, rotation, stroke, intensity, polarity, blur and
noise. ``digits_handwritten`` is the real handwritten digits set that ships with scikit-learn
(1,797 images of 8x8), upsampled to 32x32. Both are 1x32x32 uint8.

Each glyph is cropped to its ink and fitted to the frame, and a share of them is blurred through
8x8, because the handwritten digits fill their frame and are blurry: without that, the scale and
blur mismatch dominates the gap (source-only near 17% instead of about 46%, ../shared/README.md).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from raydm.data.samples import DomainSamples, LabelledSet, cached, fit_images, seed_for

if TYPE_CHECKING:
    from raydm.sections import DataConfig

CLASS_NAMES = tuple(str(d) for d in range(10))
SIZE = 32
# Bump when the rendering changes, so stale caches are not reused.
RENDER_VERSION = 2
# TeX's symbol and extension fonts put other symbols (e.g. an infinity) at the digits' codes.
SYMBOL_FONTS = {"cmsy10", "cmex10"}


def build_handwritten(config: DataConfig) -> DomainSamples:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    size = (config.image_size, config.image_size)
    images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    return DomainSamples(
        train=LabelledSet(
            fit_images(_to_uint8(images), config), torch.tensor(digits.target, dtype=torch.int64)
        ),
        test=None,
        class_names=CLASS_NAMES,
    )


def build_printed(config: DataConfig) -> DomainSamples:
    path = (
        config.root_path
        / "digits_printed"
        / f"v{RENDER_VERSION}-n{config.printed_per_class}-seed{config.seed}.pt"
    )
    images, labels = cached(
        path,
        lambda: render_printed_digits(config.printed_per_class, config.seed),
        f"{10 * config.printed_per_class} printed digits",
    )
    return DomainSamples(
        LabelledSet(fit_images(images, config), labels), test=None, class_names=CLASS_NAMES
    )


def render_printed_digits(per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` images of every digit, deterministic in ``seed``."""
    rng = np.random.default_rng(seed_for(seed, "digits_printed"))
    fonts = digit_fonts()
    labels = np.repeat(np.arange(10), per_class)
    masks = torch.stack(
        [
            torch.from_numpy(_glyph_mask(str(d), fonts[rng.integers(len(fonts))], rng))
            for d in labels
        ]
    ).unsqueeze(1)
    n = len(labels)

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.from_numpy(rng.uniform(low, high, size=(n, 1, 1, 1)).astype(np.float32))

    # Half the glyphs lose their detail through 8x8, as the handwritten digits did.
    through_8x8 = torch.from_numpy(rng.random(n) < 0.5).view(n, 1, 1, 1)
    small = F.interpolate(masks, size=(8, 8), mode="area")
    blurred = F.interpolate(small, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    masks = torch.where(through_8x8, blurred, masks)

    foreground, background = uniform(0.55, 1.0), uniform(0.0, 0.35)
    images = background + (foreground - background) * masks
    inverted = torch.from_numpy(rng.random(n) < 0.15).view(n, 1, 1, 1)
    images = torch.where(inverted, 1.0 - images, images)
    noise = torch.from_numpy(rng.standard_normal(images.shape).astype(np.float32))
    images = images + uniform(0.0, 0.06) * noise
    return _to_uint8(images), torch.from_numpy(labels).long()


@cache
def digit_fonts() -> tuple[str, ...]:
    """matplotlib's TrueType fonts that draw ten distinct, non-empty digits."""
    import matplotlib

    font_dir = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    usable = []
    for path in sorted(font_dir.glob("*.ttf")):
        if path.stem in SYMBOL_FONTS:
            continue
        glyphs = [_render(str(d), str(path), 40, 0, 0.0) for d in range(10)]
        if any(g.sum() == 0 for g in glyphs):
            continue
        distinct = {g.tobytes() for g in glyphs}
        if len(distinct) == 10:
            usable.append(str(path))
    if not usable:
        raise RuntimeError(f"no TrueType font in {font_dir} can draw the digits")
    return tuple(usable)


def _glyph_mask(text: str, font: str, rng: np.random.Generator) -> np.ndarray:
    """The glyph's ink, cropped and fitted to a 32x32 frame, as floats in [0, 1]."""
    from PIL import Image

    ink = _render(
        text, font, int(rng.integers(36, 56)), int(rng.integers(0, 4)), rng.uniform(-15, 15)
    )
    rows, cols = np.nonzero(ink > 32)
    glyph = Image.fromarray(ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1])
    height = rng.uniform(24, 32)
    scale = min(height / glyph.height, 30 / glyph.width)
    width, height = max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))
    glyph = glyph.resize((width, height), Image.Resampling.LANCZOS)
    frame = Image.new("L", (SIZE, SIZE))
    jitter = rng.integers(-1, 2, size=2)
    left = int(np.clip((SIZE - width) // 2 + jitter[0], 0, SIZE - width))
    top = int(np.clip((SIZE - height) // 2 + jitter[1], 0, SIZE - height))
    frame.paste(glyph, (left, top))
    return np.asarray(frame, dtype=np.float32) / 255.0


def _render(text: str, font_path: str, size: int, stroke: int, degrees: float) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(font_path, size)
    canvas = Image.new("L", (size * 2, size * 2))
    ImageDraw.Draw(canvas).text(
        (size, size), text, font=font, fill=255, anchor="mm", stroke_width=stroke, stroke_fill=255
    )
    if degrees:
        canvas = canvas.rotate(degrees, resample=Image.Resampling.BILINEAR)
    return np.asarray(canvas)


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)
