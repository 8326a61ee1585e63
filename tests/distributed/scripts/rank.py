"""One rank of a job, as a plain process: the launcher's variables come from the test.

argv[1]: "primary" (starts the run, logs a param, says "ready", waits for a line on stdin,
ends), "fail" (joins, logs a metric, raises), "log" (joins, logs a metric, says "logged",
flushes, says "flushed"), "sample" (joins, waits for one system-metrics sample when it
samples its host, flushes).
"""

import sys

import autolog

autolog.autolog()
mode = sys.argv[1]
run = autolog.start_run(run_name="job")
if mode == "primary":
    autolog.log_param("lr", 0.1)
    autolog.log_metric("loss", 1.0, step=0)
    autolog.flush()
    print("ready", run.run_id, flush=True)
    sys.stdin.readline()
    autolog.end_run()
elif mode == "fail":
    autolog.log_param("lr", 0.1)
    autolog.log_metric("loss", 2.0, step=0)
    raise RuntimeError("rank 1 broke")
elif mode == "log":
    autolog.log_metric("loss", 3.0, step=0)
    print("logged", run.run_id, flush=True)
    autolog.flush()
    print("flushed", flush=True)
elif mode == "sample":
    from autolog.provenance.capture import sampler

    if getattr(run, "samples_host", False):
        assert sampler().wait_for_samples(run.run_id, 1, 120)
    autolog.flush()
    print("sampled", flush=True)
