#!/usr/bin/env python3
"""Issue #14's target table, measured: runs the simulator benchmarks for
each cluster size and prints the table (markdown) with the targets beside
the figures, and every figure's command. Also writes the raw JSON of each
run with --json.

    bench/scale_table.py --sizes 10,1000            # about 3 min
    bench/scale_table.py --sizes 10000 --json t.json  # about 4 h (the false-death
                                                      # hour on two threads), 16 GB
    bench/scale_table.py --sizes 10000 --checkpoint-dir runs  # the same, resumable:
                        # run it again after an interruption and the hour goes
                        # on from its last checkpoint; a finished hour is kept
                        # in runs/ and reused

Figures (simulator, fanout 3, 1 % loss, 1-10 ms delays, defaults):
  kill        lattice_swim_sim --kills K: each kill, until every live
              replica holds the victim dead (median / max)
  false       lattice_swim_sim at 5 % loss, each replica stalling 200 ms
              with 1 % chance each second, no kills: replicas ever judged
              dead (--false-death-seconds of virtual time; 3,600 for the
              issue's hour; above 2,000 replicas on two threads, --threads 2,
              ADR 0026)
  storm       lattice_swim_sim, the same load for --storm-seconds with bytes
              counted: what a replica sends while 1 % of all stall each
              second (suspicions and refutations, 100 a second at 10,000)
  change      lattice_churn_sim: each of 10 config changes a second, until
              every replica holds it (median / max)
  quiet       lattice_churn_sim: bytes per replica per second, framed,
              over a window that holds a refresh cycle's pacing
  churn       lattice_churn_sim: the same under 10 changes a second
Above 2,000 replicas lattice_churn_sim starts the cluster formed (ADR 0022).
"""
import argparse
import json
import os
import subprocess
import sys

TARGETS = {  # N: (kill median/max s, change median/max ms)
    10: ((1.0, 1.5), (100, 300)),
    1000: ((1.5, 2.5), (500, 1000)),
    10000: ((2.0, 3.0), (1000, 1500)),
}


def run(binary, args):
    cmd = [binary] + [str(a) for a in args]
    print("running:", " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if out.returncode not in (0, 1) or not out.stdout.strip():
        sys.exit(f"{cmd[0]} failed ({out.returncode}): {out.stderr[-2000:]}")
    return " ".join([os.path.basename(cmd[0])] + cmd[1:]), json.loads(out.stdout)


def threads_for(n):
    # Above 2,000 replicas the stall runs use both cores (ADR 0026).
    return 2 if n > 2000 else 0


def false_death_run(swim, args, n, a):
    """The false-death hour, resumable when --checkpoint-dir is given: it
    saves the run every 5 virtual minutes (ADR 0026), goes on from the last
    save when run again, and keeps the finished run's output, reused when
    its options are those asked for."""
    if not a.checkpoint_dir:
        return run(swim, args)
    os.makedirs(a.checkpoint_dir, exist_ok=True)
    stem = os.path.join(a.checkpoint_dir, f"false-deaths-{n}-seed{a.seed}-{a.false_death_seconds:g}s")
    command = " ".join([os.path.basename(swim)] + [str(x) for x in args])
    def check(out, where):
        # A kept output or a checkpoint may be another run's: its options
        # must be those asked for.
        asked = {"nodes": n, "loss_percent": 5, "stall_percent_per_second": 1, "seed": a.seed, "kills": 0,
                 "threads": threads_for(n), "quiet_seconds": a.false_death_seconds}
        differs = {k: (out.get(k), v) for k, v in asked.items() if out.get(k) != v}
        if differs:
            sys.exit(f"{where} holds another run (its options, those asked: {differs}); move it away")

    if os.path.exists(stem + ".json"):
        with open(stem + ".json") as f:
            kept = json.load(f)
        check(kept, stem + ".json")
        print(f"reusing: {stem}.json", file=sys.stderr, flush=True)
        return command + f" (kept in {stem}.json)", kept
    if os.path.exists(stem + ".ckpt"):
        _, out = run(swim, ["--resume", stem + ".ckpt"])
    else:
        _, out = run(swim, args + ["--checkpoint", stem + ".ckpt", "--checkpoint-minutes", 5])
    check(out, stem + ".ckpt")
    with open(stem + ".json.partial", "w") as f:
        json.dump(out, f)
    os.replace(stem + ".json.partial", stem + ".json")
    if os.path.exists(stem + ".ckpt"):
        os.remove(stem + ".ckpt")  # 2.8 GB at 10,000; the kept output replaces it
    return command, out


def target_for(n):
    # The columns are 10, 1,000 and 10,000: a size between takes
    # the next larger column's targets.
    for size in sorted(TARGETS):
        if n <= size:
            return TARGETS[size]
    return TARGETS[max(TARGETS)]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default="build", help="build directory holding bench/")
    p.add_argument("--sizes", default="10,1000", help="cluster sizes, comma-separated")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--false-death-seconds", type=float, default=3600)
    p.add_argument("--quiet-seconds", type=float, default=120,
                   help="quiet window, after 65 settling seconds (the first refresh cycle starts at 60)")
    p.add_argument("--churn-seconds", type=float, default=30)
    p.add_argument("--storm-seconds", type=float, default=60)
    p.add_argument("--json", help="also write every run's output here")
    p.add_argument("--checkpoint-dir",
                   help="checkpoint the false-death runs here, resume them from it, and keep their output")
    a = p.parse_args()
    swim = os.path.join(a.build, "bench", "lattice_swim_sim")
    churn = os.path.join(a.build, "bench", "lattice_churn_sim")
    sizes = [int(s) for s in a.sizes.split(",") if s]

    rows, raw = [], {}
    for n in sizes:
        kills = 20 if n <= 1000 else 5
        kill_cmd, kill = run(swim, ["--nodes", n, "--kills", kills, "--quiet-seconds", 0, "--no-bytes",
                                    "--seed", a.seed])
        threads = ["--threads", threads_for(n)] if threads_for(n) else []
        false_cmd, false = false_death_run(swim, ["--nodes", n, "--loss", 5, "--stall-percent", 1, "--kills", 0, "--no-bytes",
                                                   "--quiet-seconds", a.false_death_seconds, "--seed", a.seed]
                                           + threads, n, a)
        storm_cmd, storm = run(swim, ["--nodes", n, "--loss", 5, "--stall-percent", 1, "--kills", 0,
                                      "--quiet-seconds", a.storm_seconds, "--seed", a.seed] + threads)
        churn_args = ["--replicas", n, "--settle-seconds", 65, "--quiet-seconds", a.quiet_seconds,
                      "--seconds", a.churn_seconds, "--seed", a.seed]
        if n <= 10:
            churn_args += ["--tick-ms", 5]  # a 10 ms step is a tenth of the 100 ms target
        if n > 2000:
            churn_args += ["--formed"]
        churn_cmd, ch = run(churn, churn_args)
        raw[n] = {"kill": kill, "false_deaths": false, "storm": storm, "churn": ch}
        (kill_target, change_target) = target_for(n)
        change = ch["change_at_every_replica_ms"]
        rows.append({
            "n": n,
            "kill": f"{kill['kill_seen_by_all_median_s']:.2f} / {kill['kill_seen_by_all_max_s']:.2f} s "
                    f"(≤ {kill_target[0]} / {kill_target[1]})",
            "false": f"{false['false_deaths_total']} in {a.false_death_seconds / 60:.0f} min (0)",
            "change": f"{change['median']:.0f} / {change['max']:.0f} ms (≤ {change_target[0]} / {change_target[1]})"
                      + ("" if ch["changes_never_everywhere"] == 0 else
                         f", {ch['changes_never_everywhere']} never everywhere"),
            "storm": f"{storm['quiet_bytes_per_member_per_s'] / 1000:.1f} KB/s, "
                     f"{storm['quiet_messages_per_member_per_s']:.0f} messages/s",
            "quiet": f"{ch['quiet']['framed_bytes_sent_per_replica_per_second'] / 1000:.2f} KB/s (≤ 2)",
            "churn": f"{ch['churn']['framed_bytes_sent_per_replica_per_second'] / 1000:.1f} KB/s"
                     + (" (≤ 20)" if n >= 1000 else ""),
            "commands": {"kill": kill_cmd, "false": false_cmd, "storm": storm_cmd, "churn": churn_cmd},
            "wall": kill["simulator_wall_s"] + false["simulator_wall_s"] + storm["simulator_wall_s"]
                    + ch["wall_seconds"],
            "memory": max(kill["simulator_peak_rss_mib"], false["simulator_peak_rss_mib"],
                          storm["simulator_peak_rss_mib"], ch["peak_rss_mib"]),
        })

    header = "| figure | " + " | ".join(f"N = {r['n']:,}" for r in rows) + " |"
    print(header)
    print("|---" * (len(rows) + 1) + "|")
    for key, label in [("kill", "kill seen by every live replica, median / max"),
                       ("false", "false deaths, 5 % loss, 200 ms stalls of 1 % of replicas"),
                       ("storm", "traffic per replica under those stalls (detector only), framed"),
                       ("change", "registry change at every replica, median / max"),
                       ("quiet", "quiet traffic per replica, framed"),
                       ("churn", "churn, 10 changes/s, per replica, framed")]:
        print(f"| {label} | " + " | ".join(r[key] for r in rows) + " |")
    print("| simulator wall time, peak memory | " +
          " | ".join(f"{r['wall']:.0f} s, {r['memory']:.0f} MiB" for r in rows) + " |")
    print()
    for r in rows:
        for what, cmd in r["commands"].items():
            print(f"- N = {r['n']:,}, {what}: `{cmd}`")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
