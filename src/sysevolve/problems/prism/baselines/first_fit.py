"""Baseline: first fit in input order (ignores KV-cache pressure entirely)."""

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
    """Each model, in input order, goes to the lowest-id GPU with room for it.

    A GPU may be filled to exactly GPU_MEM_SIZE (leaving no KV memory). ADRS dropped a model
    that fits nowhere; a dropped model makes a placement invalid here, so this raises instead.
    """
    placement = {gpu_id: [] for gpu_id in range(gpu_num)}
    used = [0] * gpu_num
    for model in models:
        for gpu_id in range(gpu_num):
            if used[gpu_id] + model.model_size <= GPU_MEM_SIZE:
                placement[gpu_id].append(model)
                used[gpu_id] += model.model_size
                break
        else:
            raise ValueError(f"model {model.model_name} ({model.model_size} GB) fits on no GPU")
    return placement
# EVOLVE-BLOCK-END
