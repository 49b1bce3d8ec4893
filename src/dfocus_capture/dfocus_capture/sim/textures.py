"""Procedural, seeded surface textures (sRGB uint8 tiles that wrap seamlessly) and the environment
map seen in reflective surfaces.

Textures carry detail down to a couple of texels so that defocus is visible on every surface; the
renderer picks a mip level per surface and view so that far surfaces do not alias.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

KINDS = ("noise", "stripes", "checker", "blobs", "bricks")
# Kinds with the statistics of natural images (scale-invariant occlusions, a 1/f amplitude
# spectrum): the depth network's training draws them too, so it does not learn the look of KINDS.
NATURAL_KINDS = ("dead_leaves", "pink_noise")


def _periodic_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1] that tiles: a cells x cells random grid, padded with its own wrapped
    cells so the cubic interpolation is seamless, upsampled and cropped back to one period."""
    grid = np.pad(rng.random((cells, cells)).astype(np.float32), 2, mode="wrap")
    cell_px = size / cells
    big = cv2.resize(grid, (round((cells + 4) * cell_px),) * 2, interpolation=cv2.INTER_CUBIC)
    off = round(2 * cell_px)
    return np.clip(big[off : off + size, off : off + size], 0.0, 1.0)


def fractal_noise(rng: np.random.Generator, size: int, octaves: int = 6) -> np.ndarray:
    """Sum of octaves of periodic value noise, normalised to [0, 1]."""
    out = np.zeros((size, size), np.float32)
    amp, total = 1.0, 0.0
    cells = 4
    for _ in range(octaves):
        if cells > size // 2:
            break
        out += amp * _periodic_noise(rng, size, cells)
        total += amp
        amp *= 0.6
        cells *= 2
    out /= total
    lo, hi = np.percentile(out, (1, 99))
    return np.clip((out - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def dead_leaves(rng: np.random.Generator, size: int, min_radius: float = 2.0) -> np.ndarray:
    """The dead-leaves model in [0, 1]: discs of random grey, radii with density ~ r^-3 between
    `min_radius` and a quarter of the tile, scale-invariant like the occlusion statistics of
    natural scenes. Painted back to front (the last disc is the nearest leaf) until the tile is
    covered about eight times over; drawn wrapped, so the tile is periodic."""
    img = np.full((size, size), float(rng.random()), np.float32)
    r_max = size / 4.0
    mean_area = 2 * np.pi * min_radius**2 * np.log(r_max / min_radius)  # E[pi r^2] under r^-3
    count = int(8 * size * size / mean_area)
    u = rng.random(count)
    radii = min_radius * r_max / np.sqrt(r_max**2 * (1 - u) + min_radius**2 * u)  # inverse CDF of r^-3
    centres = rng.random((count, 2)) * size
    greys = rng.random(count)
    for (cx, cy), r, g in zip(centres, radii, greys, strict=True):
        for dx in (-size, 0, size):
            for dy in (-size, 0, size):
                cv2.circle(img, (int(cx + dx), int(cy + dy)), int(round(r)), float(g), -1)
    return img


def pink_noise(rng: np.random.Generator, size: int, exponent: float | None = None) -> np.ndarray:
    """Gaussian noise with an amplitude spectrum ~ 1/f^exponent (exponent about 1, as natural images),
    normalised to [0, 1]; periodic by construction (built in the Fourier domain)."""
    alpha = float(rng.uniform(0.8, 1.4)) if exponent is None else exponent
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) / f**alpha
    spectrum[0, 0] = 0.0
    out = np.fft.irfft2(spectrum, s=(size, size)).astype(np.float32)
    lo, hi = np.percentile(out, (1, 99))
    return np.clip((out - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)


def _pattern(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A scalar pattern in [0, 1], periodic over the tile."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == "noise":
        return fractal_noise(rng, size)
    if kind == "stripes":
        # Integer periods along both axes keep the stripes periodic on the tile at any angle.
        kx, ky = int(rng.integers(4, 24)), int(rng.integers(0, 16))
        phase = 2 * np.pi * (kx * x + ky * y)
        base = 0.5 + 0.5 * np.sign(np.sin(phase)) * np.abs(np.sin(phase)) ** 0.3
        return np.clip(0.8 * base + 0.2 * fractal_noise(rng, size, 4), 0.0, 1.0)
    if kind == "checker":
        n = int(rng.choice([4, 8, 16, 32]))
        chk = ((np.floor(x * n) + np.floor(y * n)) % 2).astype(np.float32)
        return np.clip(0.75 * chk + 0.25 * fractal_noise(rng, size, 5), 0.0, 1.0)
    if kind == "blobs":
        img = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(60, 160))):
            cx, cy = rng.integers(0, size, 2)
            r = int(rng.integers(2, max(3, size // 12)))
            val = float(rng.random())
            for dx in (-size, 0, size):  # draw wrapped copies so the tile stays periodic
                for dy in (-size, 0, size):
                    cv2.circle(img, (int(cx + dx), int(cy + dy)), r, val, -1, lineType=cv2.LINE_AA)
        return np.clip(0.8 * img + 0.2 * fractal_noise(rng, size, 5), 0.0, 1.0)
    if kind == "bricks":
        rows = int(rng.choice([8, 16]))
        cols = rows // 2
        row = np.floor(y * rows)
        xs = (x * cols + 0.5 * (row % 2)) % 1.0
        ys = (y * rows) % 1.0
        mortar = ((xs < 0.06) | (ys < 0.12)).astype(np.float32)
        brick_val = _periodic_noise(rng, size, rows) * 0.5 + 0.5 * fractal_noise(rng, size, 6)
        return np.clip((1 - mortar) * brick_val + mortar * 0.95, 0.0, 1.0)
    if kind == "dead_leaves":
        return dead_leaves(rng, size)
    if kind == "pink_noise":
        return pink_noise(rng, size)
    raise ValueError(f"unknown texture kind {kind!r}; one of {KINDS + NATURAL_KINDS}")


def random_palette(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two well-separated sRGB colours (floats in 0..1)."""
    a = rng.uniform(0.05, 0.45, 3)
    b = rng.uniform(0.55, 0.95, 3)
    if rng.random() < 0.5:
        a, b = b, a
    return a.astype(np.float32), b.astype(np.float32)


def make_texture(kind: str, rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """An sRGB uint8 size x size x 3 tile of the given kind, in two random colours plus grain."""
    p = _pattern(kind, rng, size)
    a, b = random_palette(rng)
    img = a[None, None, :] * (1 - p[..., None]) + b[None, None, :] * p[..., None]
    img += (rng.standard_normal((size, size, 1)).astype(np.float32)) * 0.03  # fine grain
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def photo_texture(photos: Sequence[np.ndarray], rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """An sRGB uint8 size x size x 3 tile cut from one of `photos` (uint8 RGB or grey), at a random
    scale, colour balance and place, mirrored both ways so it wraps seamlessly. Photographs carry
    what the procedural kinds lack: the texture statistics of real surfaces."""
    if not photos:
        raise ValueError("photo_texture needs at least one photograph")
    photo = photos[int(rng.integers(len(photos)))]
    if photo.ndim == 2:
        photo = np.repeat(photo[..., None], 3, axis=2)
    half = size // 2
    # Scale so the crop spans between a quarter and all of the photograph's shorter side.
    span = min(photo.shape[:2]) * rng.uniform(0.25, 1.0)
    scale = half / span
    resized = cv2.resize(photo[..., :3], None, fx=scale, fy=scale,
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    y = int(rng.integers(resized.shape[0] - half + 1))
    x = int(rng.integers(resized.shape[1] - half + 1))
    crop = resized[y : y + half, x : x + half].astype(np.float32) / 255.0
    crop = crop[..., rng.permutation(3)] * rng.uniform(0.7, 1.3, 3).astype(np.float32)
    top = np.concatenate([crop, crop[:, ::-1]], axis=1)
    tile = np.concatenate([top, top[::-1]], axis=0)
    return np.clip(cv2.resize(tile, (size, size)) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def flat_texture(colour: np.ndarray, size: int = 8) -> np.ndarray:
    """A uniform tile: the textureless surface."""
    c = np.clip(np.asarray(colour, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.broadcast_to(c, (size, size, 3)).copy()


def mip_pyramid(tile: np.ndarray, min_size: int = 4) -> list[np.ndarray]:
    """Tile, tile/2, ... (box-filtered, so a minified texture averages instead of aliasing)."""
    levels = [tile]
    while min(levels[-1].shape[:2]) >= 2 * min_size:
        levels.append(cv2.resize(levels[-1], None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    return levels


def environment_map(rng: np.random.Generator, width: int = 1024) -> np.ndarray:
    """Linear-light equirectangular environment (width x width/2 x 3, float32, may exceed 1):
    a sky gradient, a dark floor, bright 'windows' and a striped wall, so that reflections are
    detailed and move with the viewpoint."""
    h = width // 2
    lat = (0.5 - (np.arange(h, dtype=np.float32) + 0.5) / h) * np.pi  # +pi/2 = up
    lon = ((np.arange(width, dtype=np.float32) + 0.5) / width * 2 - 1) * np.pi
    up = np.clip(np.sin(lat), -1, 1)[:, None, None]
    sky = np.array([0.35, 0.5, 0.85], np.float32) * (0.4 + 0.6 * np.clip(up, 0, 1))
    floor = np.array([0.12, 0.1, 0.08], np.float32) * np.ones_like(up)
    env = np.where(up > 0, sky, floor) * np.ones((1, width, 1), np.float32)
    stripes = 0.5 + 0.5 * np.sign(np.sin(lon * float(rng.integers(12, 40))))
    wall = (np.abs(lat) < 0.25)[:, None]
    env = np.where(wall[..., None], env * (0.4 + 0.6 * stripes[None, :, None]), env)
    # Fine tiles everywhere (a few mrad each): a mirror's reflection visibly slides between views.
    tiles = np.sign(np.sin(lat * float(rng.integers(40, 60))))[:, None] * np.sign(
        np.sin(lon * float(rng.integers(80, 120))))[None, :]
    env *= (0.7 + 0.3 * tiles)[..., None]
    for _ in range(int(rng.integers(4, 9))):
        x0 = int(rng.integers(0, width))
        y0 = int(rng.integers(h // 8, h // 2))
        w, hh = int(rng.integers(width // 40, width // 12)), int(rng.integers(h // 20, h // 6))
        brightness = float(rng.uniform(2.0, 6.0))
        cols = np.arange(x0, x0 + w) % width
        env[y0 : y0 + hh, cols] = brightness
    return env.astype(np.float32)
