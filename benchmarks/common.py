"""What both benchmarks share: the machine they ran on, medians, and running this checkout."""
import datetime
import os
import platform
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ log lines, here and below
# This checkout's package, here and in every child, not an installed copy.
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
sys.path.insert(0, ROOT)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    memory = next(int(line.split()[1]) for line in open("/proc/meminfo")
                  if line.startswith("MemTotal"))
    return ("%s | %s, %d cores | %.0f GiB | Python %s | load average %s"
            % (datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), cpu, os.cpu_count(),
               memory / 2 ** 20, platform.python_version(),
               " ".join("%.2f" % v for v in os.getloadavg())))


def median(values) -> float:
    return statistics.median(values)


def write_batches(path: str, count: int, rows: int, side: int, draws) -> float:
    """A .npy of ``count`` batches of normal(2, 3) images [rows, side, side, 3], written batch
    by batch (so that this process does not hold the largest file); its size in MiB."""
    import numpy as np

    array = np.lib.format.open_memmap(path, "w+", np.float32, (count * rows, side, side, 3))
    for start in range(0, count * rows, rows):
        piece = array[start:start + rows]
        piece[...] = draws.normal(2.0, 3.0, piece.shape)
    array.flush()
    del array
    return os.path.getsize(path) / 2.0 ** 20


def peak_rss_mib() -> float:
    """VmHWM, the peak of this program's memory: getrusage's ru_maxrss also keeps the peak of
    the forked parent from before exec (Linux), which grows with the data file it wrote."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024.0


def python(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """This interpreter on ``args``, from the checkout, output captured."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=True, **kwargs)
