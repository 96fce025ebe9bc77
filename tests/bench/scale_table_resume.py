#!/usr/bin/env python3
"""bench/scale_table.py --checkpoint-dir end to end: a false-death run
interrupted with a checkpoint left behind is resumed from it, its output
is kept and the checkpoint removed, a second table reuses the kept output
without running it again, and a kept output of other options is refused.
The 10,000-replica hour (about 3.3 h of wall time here) relies on this to span
sessions."""
import json
import os
import subprocess
import sys
import tempfile

BUILD = os.environ["LATTICE_BUILD_DIR"]
TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "scale_table.py")
SIM = os.path.join(BUILD, "bench", "lattice_swim_sim")
SECONDS = 900  # checkpoints at 300, 600 and 900 virtual s (the quiet window ends at 910)
SHORT = ["--sizes", "10", "--false-death-seconds", str(SECONDS), "--quiet-seconds", "5",
         "--churn-seconds", "2", "--storm-seconds", "5"]
FALSE_RUN = ["--nodes", "10", "--loss", "5", "--stall-percent", "1", "--kills", "0", "--no-bytes",
             "--quiet-seconds", str(SECONDS), "--seed", "1"]  # as scale_table.py runs it
OWN_COST = {"simulator_wall_s", "simulator_setup_s", "simulator_peak_rss_mib"}


def table(*args):
    out = subprocess.run([sys.executable, TABLE, "--build", BUILD, *SHORT, *args],
                         capture_output=True, text=True, timeout=240)
    return out.returncode, out.stdout, out.stderr


def figures(out):
    return {k: v for k, v in out.items() if k not in OWN_COST}


def main():
    with tempfile.TemporaryDirectory() as runs:
        stem = os.path.join(runs, f"false-deaths-10-seed1-{SECONDS}s")
        # The run as an interrupted table leaves it: its last checkpoint in
        # place (a run that ends keeps its last one, 10 s before the end).
        sim = subprocess.run([SIM, *FALSE_RUN, "--checkpoint", stem + ".ckpt", "--checkpoint-minutes", "5"],
                             capture_output=True, text=True, timeout=120)
        assert sim.returncode == 0, sim.stderr
        assert os.path.exists(stem + ".ckpt"), sim.stderr
        straight = json.loads(sim.stdout)

        code, first, err = table("--checkpoint-dir", runs)
        assert code == 0, err
        assert "--resume " + stem + ".ckpt" in err, f"the checkpoint was not resumed:\n{err}"
        assert not os.path.exists(stem + ".ckpt"), "the finished run's checkpoint was left behind"
        with open(stem + ".json") as f:
            kept = json.load(f)
        assert figures(kept) == figures(straight), "the resumed run differs from the run it went on with"
        false_row = [line for line in first.splitlines() if line.startswith("| false deaths")]
        assert len(false_row) == 1, first

        code, second, err = table("--checkpoint-dir", runs)
        assert code == 0, err
        assert "reusing: " + stem + ".json" in err, err
        assert "--stall-percent 1 --kills 0 --no-bytes" not in err, f"the kept run was run again:\n{err}"
        assert [line for line in second.splitlines() if line.startswith("| false deaths")] == false_row, second

        kept["seed"] = 99
        with open(stem + ".json", "w") as f:
            json.dump(kept, f)
        code, _, err = table("--checkpoint-dir", runs)
        assert code != 0 and "holds another run" in err, f"another run's output was taken ({code}):\n{err}"
    print("scale_table resume test passed")


if __name__ == "__main__":
    main()
