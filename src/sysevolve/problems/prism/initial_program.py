"""Prism: place LLMs on shared 80 GB GPUs to minimise the maximum KV-cache pressure.

`compute_model_placement(gpu_num, models)` returns {gpu_id: [Model, ...]} for gpu_id in
range(gpu_num), every model exactly once, at most GPU_MEM_SIZE GB of models per GPU. The
harness recomputes the score from the placement itself.
"""

from dataclasses import dataclass

GPU_MEM_SIZE = 80  # GB per GPU


@dataclass
class Model:
    model_name: str   # unique within an instance
    model_size: int   # GB of weights
    req_rate: int     # requests per second
    slo: int          # latency objective; demand is weighted by req_rate / slo
    cur_gpu_id: int


# EVOLVE-BLOCK-START
def compute_model_placement(gpu_num, models):
    """Prism's greedy (Algorithm 1 without its tau check).

    Models in decreasing req_rate / slo; each goes to the GPU with the lowest current
    KV-cache pressure (weight / remaining memory) among those where it fits.
    """
    ordered = sorted(models, key=lambda m: m.req_rate / m.slo, reverse=True)
    placement = {gpu_id: [] for gpu_id in range(gpu_num)}
    remaining = [GPU_MEM_SIZE] * gpu_num
    weight = [0.0] * gpu_num
    for model in ordered:
        best, best_ratio = None, float("inf")
        for gpu_id in range(gpu_num):
            if model.model_size <= remaining[gpu_id] and remaining[gpu_id] > 0:
                ratio = weight[gpu_id] / remaining[gpu_id]
                if ratio < best_ratio:
                    best, best_ratio = gpu_id, ratio
        if best is None:
            raise ValueError(f"model {model.model_name} ({model.model_size} GB) fits on no GPU; "
                             f"remaining memory {remaining}")
        placement[best].append(model)
        weight[best] += model.req_rate / model.slo
        remaining[best] -= model.model_size
    return placement
# EVOLVE-BLOCK-END
