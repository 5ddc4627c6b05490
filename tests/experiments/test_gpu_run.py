"""The time-boxed session script (experiments/gpu_run.sh) on this CPU: jobs run in order, time-boxed, logged."""

import os
import subprocess
import sys
import tarfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow  # ~40 s: the time box has to outlast a jax import on a loaded 2-core machine
@pytest.mark.skipif(sys.platform != "linux", reason="bash and GNU timeout")
def test_jobs_run_in_order_time_boxed_and_come_back(tmp_path):
    out = tmp_path / "out"
    runs = "/tmp/runs"
    os.makedirs(runs, exist_ok=True)
    marker = os.path.join(runs, f"gpu_run_test_{os.getpid()}")
    jobs = [
        f"mkdir -p {marker} && echo '{{\"ok\": 1}}' > {marker}/results.json && echo first",
        "sleep 120; echo never",  # cut by the time box
        "echo third",  # not started: no time left
    ]
    env = {
        **os.environ,
        "OUT": str(out),
        "MARGIN": "1",
        "PATH": os.path.dirname(sys.executable) + ":" + os.environ["PATH"],
    }
    p = subprocess.run(["bash", os.path.join(REPO, "experiments", "gpu_run.sh"), "40", *jobs], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr
    log = (out / "session.log").read_text()
    assert "job 1 exit 0" in log and "job 2 exit 124" in log and "job 3 not started" in log, log
    assert "jax" in log and "devices" in log
    assert (out / "job_1.log").read_text().strip() == "first" and "never" not in (out / "job_2.log").read_text()
    with tarfile.open(out / "runs.tgz") as tar:
        assert f"./{os.path.basename(marker)}/results.json" in tar.getnames()
    subprocess.run(["rm", "-rf", marker], check=True)
