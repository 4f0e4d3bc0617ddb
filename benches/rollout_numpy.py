"""Attention rollout the numpy way (head mean, + I, row-normalise, np.matmul chain; OpenBLAS),
with the top 10 keys per row, for benches/compare.sh."""
import numpy as np, sys, time
t = time.time()
a = np.load(sys.argv[1], mmap_mode="r")
L, B, H, S, _ = a.shape
I = np.eye(S)
for b in range(B):
    J = None
    for l in range(L):
        m = a[l, b].mean(axis=0, dtype=np.float64) + I
        m /= m.sum(1, keepdims=True)
        J = m if J is None else m @ J
        top = np.argpartition(-J, 10, axis=1)[:, :10]
print("numpy rollout", time.time() - t)
