"""The dataset workload on Dask: a LocalCluster of W single-threaded worker processes maps
attnframes.topk over shards of the file list into one hive dataset (the recipe of the
README's "Scaling out"). Prints the wall time of the mapped work (cluster start excluded).

    python benches/dataset_dask.py DATA_DIR OUT_DIR [workers=2] [shards=8]
"""
import sys
import time

from dask.distributed import Client, LocalCluster

import attnframes as af


def shard(data, out, i, n):
    af.topk(f"{data}/attn/*.npy", tokens_dir=f"{data}/tokens", k=10, out=out,
            partition_by=["layer"], shard=(i, n), threads=1)
    return i


def main():
    data, out = sys.argv[1], sys.argv[2].rstrip("/") + "/"
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 8
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True) as cluster, \
            Client(cluster) as client:
        t0 = time.perf_counter()
        client.gather(client.map(shard, [data] * n, [out] * n, range(n), [n] * n))
        print(f"{time.perf_counter() - t0:.3f}")


if __name__ == "__main__":
    main()
