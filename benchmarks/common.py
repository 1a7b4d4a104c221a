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


def python(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """This interpreter on ``args``, from the checkout, output captured."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=True, **kwargs)
