"""Time the Reader on a page of many ink blobs (a noisy scan, a page of print): segmentation's worst case.

    python benchmarks/blob_page.py --side 1000     # 30% ink in 3-pixel cells, read on one thread
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch

from digitocr import Reader

CELL_PX = 3  # blobs are random cells of this size
INK_SHARE = 0.3


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--side", type=int, default=1000, help="page side in pixels (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default: %(default)s)")
    args = p.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    cells = ((rng.random((args.side // CELL_PX,) * 2) < INK_SHARE) * 255).astype(np.uint8)
    page = cv2.resize(cells, (args.side, args.side), interpolation=cv2.INTER_NEAREST)
    reader = Reader()
    start = time.perf_counter()
    result = reader.read(page)
    print(f"{args.side}x{args.side}: {time.perf_counter() - start:.1f} s, {len(result.digits)} digits")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
