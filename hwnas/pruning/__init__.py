"""AMC channel pruning (He et al., ECCV 2018) through Torch-Pruning's dependency graph, under a FLOPs,
parameter or latency budget, with uniform and global magnitude pruning as baselines.

Names are imported on first use (torch and Torch-Pruning are heavy).
"""

from hwnas.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Budget": "budget",
        "PruneConfig": "job",
        "run_prune": "job",
        "load_base": "base",
        "save_pruned": "base",
        "analyse": "structure",
        "apply_counts": "structure",
        "DDPG": "ddpg",
        "EpisodeStore": "store",
    },
)
__all__ = ["DDPG", "Budget", "EpisodeStore", "PruneConfig", "analyse", "apply_counts", "load_base", "run_prune", "save_pruned"]
