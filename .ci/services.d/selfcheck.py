"""Smoke check of the services that .ci/services started (not collected by pytest).

    eval "$(bash .ci/services up slurm postgres mlflow)"
    python .ci/services.d/selfcheck.py       # with the project's venv python

Prints the wall time of each check; exits non-zero on the first failure.
"""
import os
import pathlib
import subprocess
import tempfile
import time

T0 = time.time()


def say(*args):
    print(f"{time.time() - T0:6.1f}s", *args, flush=True)


def sh(cmd):
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True).stdout.strip()


def wait_until(pred, timeout, what):
    end = time.time() + timeout
    while not pred():
        if time.time() > end:
            raise TimeoutError(what)
        time.sleep(0.2)


def add(a, b):
    return a + b


def slurm(work):
    import submitit

    say("sinfo:", sh("sinfo -h -o '%P %T cpus=%c mem=%m'"))
    jid = sh(f"cd {work} && sbatch --parsable --wrap hostname")
    t = time.time()
    wait_until(lambda: sh(f"sacct -n -X -P -j {jid} -o State") in ("COMPLETED", "FAILED", "CANCELLED"), 60, "sbatch")
    state = sh(f"sacct -n -X -P -j {jid} -o State")
    say(f"sbatch --wrap hostname: sacct {state} after {time.time() - t:.1f}s")
    assert state == "COMPLETED"

    # Two jobs that ask for no memory (submitit's default) run at once (CR_Core).
    a, b = (sh(f"cd {work} && sbatch --parsable --wrap 'sleep 4'") for _ in range(2))
    wait_until(lambda: sh(f"squeue -h -j {a},{b} -o %T").split() == ["RUNNING", "RUNNING"], 30, "two jobs at once")
    say("two 1-cpu jobs run at once")

    ex = submitit.AutoExecutor(folder=work / "submitit")
    assert ex.cluster == "slurm", ex.cluster
    ex.update_parameters(slurm_partition="debug", timeout_min=5, cpus_per_task=1)
    t = time.time()
    assert ex.submit(add, 2, 3).result() == 5
    say(f"submitit result() in {time.time() - t:.1f}s")
    ex.update_parameters(mem_gb=1)
    assert ex.submit(add, 1, 1).result() == 2
    ex = submitit.AutoExecutor(folder=work / "array")
    ex.update_parameters(slurm_partition="debug", timeout_min=5, cpus_per_task=1)
    t = time.time()
    assert [j.result() for j in ex.map_array(add, [1, 2, 3, 4], [10, 20, 30, 40])] == [11, 22, 33, 44]
    say(f"map_array of 4 in {time.time() - t:.1f}s; mem_gb=1 accepted")
    checkpoint(work, submitit)


class Count:  # made a Checkpointable below, once submitit is imported
    def __init__(self):
        self.i = 0

    def __call__(self, n, log):
        with open(log, "a") as f:
            f.write(f"start {self.i}\n")
        while self.i < n:
            time.sleep(0.25)
            self.i += 1
        return self.i


def checkpoint(work, submitit):
    global Count
    Count = type("Count", (Count, submitit.helpers.Checkpointable), {"__module__": __name__})
    log = work / "count.log"
    ex = submitit.AutoExecutor(folder=work / "ckpt")
    ex.update_parameters(slurm_partition="debug", timeout_min=5, cpus_per_task=1)
    job = ex.submit(Count(), 60, str(log))

    def starts():
        return [int(line.split()[1]) for line in log.read_text().splitlines()] if log.exists() else []

    wait_until(lambda: starts(), 60, "checkpointable job start")
    for k, interrupt in enumerate([lambda: sh(f"scancel --signal=USR2 {job.job_id}"), job._interrupt], 2):
        time.sleep(2)
        t = time.time()
        interrupt()
        wait_until(lambda: len(starts()) >= k, 120, "requeue")
        say(f"interrupt {k - 1}: requeued and restarted from i={starts()[-1]} after {time.time() - t:.1f}s")
    assert job.result() == 60 and starts()[1] > 0 and starts()[2] > starts()[1], starts()
    say("checkpointable finished:", sh(f"sacct -n -X -P -j {job.job_id} -o State"))


def postgres_optuna():
    import optuna

    say("psql:", sh(f"psql '{os.environ['BENCHMARK_POSTGRES_URI']}' -Atc 'select version()'").split(" on ")[0])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=os.environ["BENCHMARK_OPTUNA_STORAGE"], study_name="selfcheck", load_if_exists=True)
    study.optimize(lambda tr: tr.suggest_float("x", -1, 1) ** 2, n_trials=3)
    say(f"optuna: study has {len(study.trials)} trials")


def mlflow_run(work):
    import mlflow

    mlflow.set_experiment("selfcheck")
    art = work / "a.txt"
    art.write_text("hello artifact\n")
    with mlflow.start_run() as run:
        mlflow.log_metric("acc", 0.5, step=1)
        mlflow.log_artifact(str(art))
    got = mlflow.MlflowClient().get_run(run.info.run_id)
    path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="a.txt", dst_path=str(work / "dl"))
    assert got.data.metrics["acc"] == 0.5 and pathlib.Path(path).read_text() == "hello artifact\n"
    say(f"mlflow: metric and artifact read back ({got.info.artifact_uri})")


if __name__ == "__main__":
    work = pathlib.Path(tempfile.mkdtemp(prefix="services-selfcheck-"))
    up = os.environ.get("BENCHMARK_SERVICES", "").split(",")
    say("services:", up)
    if "slurm" in up:
        slurm(work)
    if "postgres" in up:
        postgres_optuna()
    if "mlflow" in up:
        mlflow_run(work)
    say("ALL OK")
