#!/usr/bin/env python3
"""lattice_swim_sim --checkpoint / --resume end to end (ADR 0026): a run
saved during its quiet window and resumed from the last save prints what
the same run does unstopped, kills after the quiet window included; a
file that is not a checkpoint, or a resume given other options, is
refused with a clear error. The 10,000-member hour relies on this."""
import json
import os
import subprocess
import sys
import tempfile

SIM = os.environ["LATTICE_SWIM_SIM"]
RUN = ["--nodes", "200", "--loss", "5", "--stall-percent", "5", "--quiet-seconds", "150", "--kills", "3",
       "--seed", "4", "--threads", "2"]
# The simulator's own cost differs between runs; everything else must not.
OWN_COST = {"simulator_wall_s", "simulator_setup_s", "simulator_peak_rss_mib"}


def sim(*args):
    out = subprocess.run([SIM, *args], capture_output=True, text=True, timeout=120)
    return out.returncode, out.stdout, out.stderr


def figures(stdout):
    return {k: v for k, v in json.loads(stdout).items() if k not in OWN_COST}


def main():
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "run.ckpt")
        code, straight, err = sim(*RUN)
        assert code == 0, err
        code, saving, err = sim(*RUN, "--checkpoint", ckpt, "--checkpoint-minutes", "1")
        assert code == 0, err
        # Saved at 60 and 120 virtual s; the file holds the last.
        assert err.count("checkpoint: ") == 2, err
        assert figures(saving) == figures(straight), "checkpointing changed the run"
        code, resumed, err = sim("--resume", ckpt)
        assert code == 0, err
        assert "resumed: at 120 virtual s" in err, err
        expected, got = figures(straight), figures(resumed)
        assert got == expected, {k: (expected[k], got.get(k)) for k in expected if got.get(k) != expected[k]}
        assert expected["kills"] == 3 and len(expected["kill_seen_by_all_each_s"]) == 3, expected

        code, _, err = sim("--resume", ckpt, "--seed", "5")
        assert code == 2 and "--resume takes no other option" in err, (code, err)
        garbage = os.path.join(tmp, "garbage")
        with open(garbage, "w") as f:
            f.write("not a checkpoint at all\n")
        code, _, err = sim("--resume", garbage)
        assert code == 1 and "not a checkpoint of this simulator" in err, (code, err)
        code, _, err = sim("--resume", os.path.join(tmp, "missing"))
        assert code == 1 and "cannot read" in err, (code, err)
    print("swim_sim resume test passed")


if __name__ == "__main__":
    sys.exit(main())
