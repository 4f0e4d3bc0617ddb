"""KMeans (n_init=10) + silhouette for k = 2..9 on one head's rows, scikit-learn, for
benches/compare.sh."""
import sys
import time

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

t = time.time()
rows = np.load(sys.argv[1], mmap_mode="r")[0, 0, 0].astype(np.float64)
for k in range(2, 10):
    km = KMeans(n_clusters=k, random_state=0, n_init=10).fit(rows)
    silhouette_score(rows, km.labels_)
print("scikit-learn cluster", time.time() - t)
