"""Throughput of mlopsctl's S3 blob transfer against boto3's managed transfer.

Starts its own SeaweedFS on free loopback ports, writes one random file, then for each run
times (interleaved, alternating which goes first):

  mlopsctl upload    put_blob_file: sha256 of the file + conditional upload
  mlopsctl download  get_blob_file: parallel ranged GETs, sha256 verified before rename
  boto3 upload       client.upload_file, default settings
  boto3 download     client.download_file, default settings

and prints the medians in MiB/s and the ratios mlopsctl/boto3 (goal: >= 0.9 both ways).

    .venv/bin/python bench/store.py [--runs 5] [--size-mib 256]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlopsctl.store.blobs import blob_key, get_blob_file, put_blob_file
from mlopsctl.store.s3 import DEFAULT_PART_SIZE, DEFAULT_WORKERS, S3Store
from mlopsctl.testing.seaweed import start_seaweed

MiB = 1 << 20
BUCKET = "bench"


def make_random_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MiB)
            f.write(os.urandom(n))
            left -= n


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds (all threads) for one call."""
    # Flush dirty pages first, so that the write-back of one transfer (the server's volume
    # files, the downloaded file) is not billed to the next one.
    os.sync()
    cpu = time.process_time()
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--part-size-mib", type=int, default=DEFAULT_PART_SIZE // MiB)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument(
        "--volume-size-mb",
        type=int,
        default=1024,
        help="SeaweedFS volume size limit; small volumes add volume-allocation noise",
    )
    parser.add_argument(
        "--settle", type=float, default=3.0, help="seconds to wait after each run's deletes"
    )
    parser.add_argument(
        "--workdir", help="where the server data and files go (default: a temp dir)"
    )
    args = parser.parse_args(argv)

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mlopsctl-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    size = args.size_mib * MiB
    print(f"starting SeaweedFS in {workdir} ...", flush=True)
    server = start_seaweed(workdir / "seaweedfs", volume_size_limit_mb=args.volume_size_mb)
    try:
        os.environ.update(
            AWS_ACCESS_KEY_ID=server.access_key,
            AWS_SECRET_ACCESS_KEY=server.secret_key,
            AWS_DEFAULT_REGION=server.region,
            AWS_EC2_METADATA_DISABLED="true",
        )
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            os.environ.pop(name, None)
        server.create_bucket(BUCKET)
        src = workdir / "payload.bin"
        print(f"writing {args.size_mib} MiB of random data ...", flush=True)
        make_random_file(src, size)

        import boto3

        boto = boto3.client("s3", endpoint_url=server.endpoint)
        store = S3Store(
            f"s3://{BUCKET}/mlopsctl",
            endpoint_url=server.endpoint,
            part_size=args.part_size_mib * MiB,
            workers=args.workers,
        )
        cpu: dict[str, list[float]] = {}
        results: dict[str, list[float]] = {
            "mlopsctl upload": [],
            "mlopsctl download": [],
            "boto3 upload": [],
            "boto3 download": [],
        }
        out_dir = workdir / "downloads"
        out_dir.mkdir(exist_ok=True)
        digest = ""

        def ml_up() -> None:
            nonlocal digest
            digest = put_blob_file(store, src)

        def ml_down() -> None:
            get_blob_file(store, digest, out_dir / "mlopsctl.bin")

        def b_up() -> None:
            boto.upload_file(str(src), BUCKET, "boto3/payload.bin")

        def b_down() -> None:
            boto.download_file(BUCKET, "boto3/payload.bin", str(out_dir / "boto3.bin"))

        # A warm-up pass so that neither side pays for connection set-up or a cold server.
        ml_up()
        b_up()
        store.delete(blob_key(digest))

        for run in range(args.runs):
            steps = [("mlopsctl", ml_up, ml_down), ("boto3", b_up, b_down)]
            if run % 2:
                steps.reverse()
            for name, up, _ in steps:
                wall, used = timed(up)
                results[f"{name} upload"].append(size / MiB / wall)
                cpu.setdefault(f"{name} upload", []).append(used)
            for name, _, down in steps:
                wall, used = timed(down)
                results[f"{name} download"].append(size / MiB / wall)
                cpu.setdefault(f"{name} download", []).append(used)
            store.delete(blob_key(digest))
            boto.delete_object(Bucket=BUCKET, Key="boto3/payload.bin")
            for leftover in out_dir.iterdir():
                leftover.unlink()
            # SeaweedFS frees a deleted object's chunks in the background; let that finish
            # rather than land on whichever transfer of the next run happens to overlap it.
            time.sleep(args.settle)
            line = "  ".join(f"{k} {v[-1]:6.1f} ({cpu[k][-1]:.2f}s)" for k, v in results.items())
            print(f"run {run + 1}: {line}  MiB/s (client CPU)", flush=True)

        medians = {k: statistics.median(v) for k, v in results.items()}
        print(
            f"\n{args.size_mib} MiB, {args.runs} runs, part {args.part_size_mib} MiB, "
            f"{args.workers} workers; medians:"
        )
        for name, value in medians.items():
            used = statistics.median(cpu[name])
            print(f"  {name:18s} {value:8.1f} MiB/s   client CPU {used:5.2f} s")
        up = medians["mlopsctl upload"] / medians["boto3 upload"]
        down = medians["mlopsctl download"] / medians["boto3 download"]
        print(f"  ratio upload   mlopsctl/boto3 = {up:.2f}")
        print(f"  ratio download mlopsctl/boto3 = {down:.2f}")
        store.close()
        return 0
    finally:
        server.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
