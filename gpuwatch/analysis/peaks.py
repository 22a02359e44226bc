"""Peak dense BF16/FP16 tensor throughput and memory bandwidth per GPU model, to turn vLLM's
estimated FLOP/s and bytes/s into utilisation. Dense figures (no 2:4 sparsity), the tensor
rate with FP32 accumulate where NVIDIA lists both (what BF16 inference kernels use).

Each row: a substring of the NVML device name (first match wins, so longer names come first),
peak FLOP/s, peak bytes/s, and the source (NVIDIA datasheets / architecture whitepapers).
"""

from __future__ import annotations

T = 1e12
TB = 1e12

PEAKS: tuple[tuple[str, float, float, str], ...] = (
    # H100 datasheet (nvidia.com/en-us/data-center/h100): BF16 1,979 TFLOPS SXM / 1,671 NVL /
    # 1,513 PCIe *with sparsity* (dense = half); memory 3.35 / 3.9 / 2.0 TB/s
    ("H100 NVL", 835.5 * T, 3.9 * TB, "NVIDIA H100 datasheet (NVL)"),
    ("H100 PCIe", 756.5 * T, 2.0 * TB, "NVIDIA H100 datasheet (PCIe)"),
    ("H100", 989.5 * T, 3.35 * TB, "NVIDIA H100 datasheet (SXM)"),
    # H200 datasheet: BF16 1,979 TFLOPS with sparsity (SXM), 4.8 TB/s
    ("H200 NVL", 835.5 * T, 4.8 * TB, "NVIDIA H200 datasheet (NVL)"),
    ("H200", 989.5 * T, 4.8 * TB, "NVIDIA H200 datasheet (SXM)"),
    # A100 datasheet: BF16 312 TFLOPS dense; 80GB SXM 2,039 GB/s, 80GB PCIe 1,935 GB/s, 40GB 1,555 GB/s
    ("A100-SXM4-80GB", 312 * T, 2.039 * TB, "NVIDIA A100 datasheet (80GB SXM)"),
    ("A100 80GB PCIe", 312 * T, 1.935 * TB, "NVIDIA A100 datasheet (80GB PCIe)"),
    ("A100", 312 * T, 1.555 * TB, "NVIDIA A100 datasheet (40GB)"),
    # L40S datasheet: BF16 733 TFLOPS with sparsity (366 dense), 864 GB/s
    ("L40S", 366 * T, 0.864 * TB, "NVIDIA L40S datasheet"),
    # Ada Lovelace whitepaper, GeForce RTX 4090: FP16 tensor with FP32 accumulate 165.2 dense; 1,008 GB/s
    ("RTX 4090", 165.2 * T, 1.008 * TB, "NVIDIA Ada Lovelace GPU architecture whitepaper (RTX 4090)"),
    # Ampere GA102 whitepaper, GeForce RTX 3090: FP16 tensor with FP32 accumulate 71 dense; 936 GB/s
    ("RTX 3090", 71 * T, 0.936 * TB, "NVIDIA Ampere GA102 GPU architecture whitepaper (RTX 3090)"),
)


def peak_for(gpu_name: str | None) -> tuple[float, float] | None:
    """(peak FLOP/s, peak bytes/s) of a GPU model by its NVML name; None when not in the table."""
    if not gpu_name:
        return None
    for key, flops, bw, _source in PEAKS:
        if key.lower() in gpu_name.lower():
            return flops, bw
    return None
