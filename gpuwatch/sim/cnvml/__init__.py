"""Build the compiled NVML stand-in (``cnvml.c``) and say where it is.

``build()`` compiles ``cnvml.c`` with the system C compiler into
``<cache>/libnvidia-ml.so.1`` (once per source and compiler; the cache directory is keyed by
their hash) and returns the directory. A process started with that directory on
``LD_LIBRARY_PATH`` gets the stand-in from pynvml's ordinary ``CDLL("libnvidia-ml.so.1")``:
nothing in the process is patched. ``environment()`` builds the variables for such a process.

    python -m gpuwatch.sim.cnvml            # prints the directory (builds it when needed)
    eval "$(python -m gpuwatch.sim.cnvml --export --gpus 16)"   # a shell ready to run gpuwatch

The box it simulates and its variables are described at the top of ``cnvml.c``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("cnvml.c")
LIBRARY = "libnvidia-ml.so.1"


class NoCompiler(RuntimeError):
    """No C compiler on this machine (the stand-in cannot be built)."""


def compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gpuwatch" / "cnvml"


def build(cache: str | os.PathLike | None = None) -> Path:
    """Compile the stand-in (if not already built) and return the directory holding
    ``libnvidia-ml.so.1``. Raises :class:`NoCompiler` without a C compiler and
    ``subprocess.CalledProcessError`` when compilation fails."""
    cc = compiler()
    if cc is None:
        raise NoCompiler("no C compiler (cc, gcc or clang) found to build the NVML stand-in")
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + cc.encode()).hexdigest()[:16]
    out_dir = Path(cache) if cache is not None else _cache_root() / key
    lib = out_dir / LIBRARY
    if lib.exists():
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    # compile beside the target and rename: concurrent builders never load a half-written file
    fd, tmp = tempfile.mkstemp(prefix=".cnvml-", suffix=".so", dir=out_dir)
    os.close(fd)
    try:
        subprocess.run([cc, "-shared", "-fPIC", "-O2", "-fvisibility=hidden", "-Wall", "-Wextra",
                        "-Wl,-soname," + LIBRARY, "-o", tmp, str(SOURCE), "-lm", "-lpthread"],
                       check=True, capture_output=True, text=True)
        os.replace(tmp, lib)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out_dir


def environment(lib_dir: str | os.PathLike, *, gpus: int = 8, busy_us: float = 0, procs: str | None = None,
                driver: str | None = None, pcie_sample_ms: float | None = None, lost: str | None = None,
                base: dict | None = None) -> dict[str, str]:
    """Environment for a child process that should load the stand-in from ``lib_dir``."""
    env = dict(os.environ if base is None else base)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(lib_dir), env.get("LD_LIBRARY_PATH")) if p)
    env["GPUWATCH_CNVML_GPUS"] = str(gpus)
    env["GPUWATCH_CNVML_BUSY_US"] = str(int(busy_us))
    for name, value in (("PROCS", procs), ("DRIVER", driver), ("LOST", lost),
                        ("PCIE_SAMPLE_MS", None if pcie_sample_ms is None else int(pcie_sample_ms))):
        if value is None:
            env.pop(f"GPUWATCH_CNVML_{name}", None)
        else:
            env[f"GPUWATCH_CNVML_{name}"] = str(value)
    return env


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m gpuwatch.sim.cnvml", description=__doc__.splitlines()[0])
    ap.add_argument("--export", action="store_true", help="print shell export lines instead of the directory")
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--busy-us", type=float, default=0, help="busy time of every NVML call (µs)")
    args = ap.parse_args(argv)
    try:
        lib_dir = build()
    except NoCompiler as e:
        print(f"gpuwatch: {e}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as e:
        print(f"gpuwatch: building the NVML stand-in failed:\n{e.stderr}", file=sys.stderr)
        return 1
    if not args.export:
        print(lib_dir)
        return 0
    env = environment(lib_dir, gpus=args.gpus, busy_us=args.busy_us, base={})
    for k in ("LD_LIBRARY_PATH", "GPUWATCH_CNVML_GPUS", "GPUWATCH_CNVML_BUSY_US"):
        value = env[k] if k != "LD_LIBRARY_PATH" else f"{lib_dir}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"
        print(f'export {k}="{value}"')
    return 0
