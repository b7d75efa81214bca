"""test_campaign: the fixed-seed failure-injection campaign (16 runs drawn from seed 1),
each run a test, judged as scripts/campaign judges it (pgtest.campaign): the kernel must
survive and clean up whatever the injected failures did to the workload, and end with
its record of the failures it injected. With them, scripts/campaign across machines:
shards that together are the campaign, the results files, their merge, and --replay's
account of a run."""

import json
import re
import subprocess
import sys

import pytest
from pgtest import campaign, paths
from pgtest.check import check

RUNS = [campaign.draw(seed) for seed in campaign.seeds(campaign.FIXED_SEED, campaign.FIXED_RUNS)]
CAMPAIGN = str(paths.REPO / "scripts" / "campaign")
# A campaign of two quick runs (ktest scenarios at 16M, no swap disk: a few seconds each
# under TCG), for the results files and their merge.
TINY_SEED, TINY_RUNS = 90, 2


@pytest.mark.timeout(campaign.DEFAULT_TIMEOUT_S + 60)
@pytest.mark.parametrize("run", RUNS, ids=[str(run["seed"]) for run in RUNS])
def test_campaign_run(run, workdir, built):
    outcome = campaign.execute(run, workdir, accel=built.accel)
    assert outcome.ok, (f"seed {run['seed']}: {run['workload']} -m {run['mem']}: {outcome.reason}\n"
                        f"reproduce: {campaign.replay_command(run['seed'])}\n"
                        f"kernel command line: {run['cmdline']}\n"
                        + "\n".join(outcome.console.splitlines()[-30:]))
    # Every run arms its sites: the kernel's record names each of them, as --replay shows.
    record = [line for line in campaign.explain(run, outcome) if "the kernel's record" in line]
    assert record and all(f"{s['site']} failed " in record[0] for s in run["sites"]), (
        f"seed {run['seed']}: the kernel's record of injected failures: {record}\n"
        + "\n".join(outcome.console.splitlines()[-30:]))


def campaign_cli(*args, timeout=30):
    """scripts/campaign ARGS -> (status, stdout, stderr)."""
    done = subprocess.run([sys.executable, CAMPAIGN, *args], capture_output=True, check=False,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout, done.stderr


def listed(*args):
    status, out, err = campaign_cli("--list", *args)
    check(status == 0, f"scripts/campaign --list {' '.join(args)}: {status}\n{err}")
    return [line for line in out.splitlines() if not line.startswith("campaign:")]


def test_shards_together_run_exactly_the_campaign():
    """Two shards (and three) of a seeded campaign run exactly its runs, each once: the
    same seeds with the same drawn settings (workload, memory, swap, sites, failseed)."""
    whole = listed("--seed", "7", "--runs", "11")
    check(len(whole) == 11 and len(set(whole)) == 11, f"the unsharded list: {whole}")
    for n in (2, 3):
        shards = [listed("--seed", "7", "--runs", "11", "--shard", f"{k}/{n}") for k in range(1, n + 1)]
        together = [line for shard in shards for line in shard]
        check(sorted(together) == sorted(whole) and len(together) == len(whole),
              f"{n} shards: {shards}\nunsharded: {whole}")
        check(all(len(shard) in (11 // n, 11 // n + 1) for shard in shards), f"{n} unequal shards: {shards}")
    again = listed("--seed", "7", "--runs", "11", "--shard", "2/3")
    check(again == listed("--seed", "7", "--runs", "11", "--shard", "2/3"), "a shard is not deterministic")


@pytest.mark.parametrize("args, message", [
    (["--shard", "0/2", "--seed", "1"], "K must be 1 to N"),
    (["--shard", "3/2", "--seed", "1"], "K must be 1 to N"),
    (["--shard", "x", "--seed", "1"], "is not K/N"),
    (["--shard", "1/2"], "--shard needs --seed"),
    (["--replay", "5", "--shard", "1/2", "--seed", "1"], "takes no --shard"),
    (["--runs", "0"], "--runs must be at least 1"),
], ids=["zero", "beyond", "not-k-n", "no-seed", "replay", "no-runs"])
def test_bad_campaign_arguments_are_refused(args, message):
    status, _, err = campaign_cli(*args, "--list")
    check(status == 2 and message in err, f"scripts/campaign {args}: {status} {err!r}")


def test_results_files_and_their_merge(tmp_path, built):
    """Each shard's --results file has one JSON line per run (seed, drawn settings,
    verdict, duration, replay command); --merge prints the campaign's report from the
    shards' files, and refuses an incomplete, foreign or damaged set, saying why."""
    files, shard_lines = [], []
    for k in (1, 2):
        results = tmp_path / f"shard-{k}.jsonl"
        status, out, err = campaign_cli("--seed", str(TINY_SEED), "--runs", str(TINY_RUNS),
                                        "--shard", f"{k}/2", "--results", str(results), "--no-build",
                                        "-j", "1", timeout=2 * campaign.DEFAULT_TIMEOUT_S)
        check(status in (0, 1) and results.exists(), f"shard {k}/2: status {status}\n{out}\n{err}")
        files.append(results)
        shard_lines += [line for line in out.splitlines() if re.match(r"(PASS|FAIL) seed ", line)]

    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    wanted = {run["seed"]: run for run in map(campaign.draw, campaign.seeds(TINY_SEED, TINY_RUNS))}
    check(sorted(r["seed"] for r in records) == sorted(wanted), f"the results' seeds: {records}")
    for record in records:
        run = wanted[record["seed"]]
        check(all(record[key] == run[key] for key in campaign.RUN_KEYS)
              and record["verdict"] in ("PASS", "FAIL") and record["reason"]
              and record["seconds"] > 0 and record["replay"] == f"scripts/campaign --replay {run['seed']}"
              and record["kernel_verdicts"] and record["campaign"]["seed"] == TINY_SEED
              and record["campaign"]["runs"] == TINY_RUNS,
              f"a results line: {record}\nthe run: {run}")

    status, out, err = campaign_cli("--merge", *map(str, files))
    passed = sum(r["verdict"] == "PASS" for r in records)
    merged_lines = [line for line in out.splitlines() if re.match(r"(PASS|FAIL) seed ", line)]
    check(status == (0 if passed == len(records) else 1) and not err
          and sorted(merged_lines) == sorted(shard_lines)
          and out.splitlines()[-1] == f"{passed} passed, {len(records) - passed} failed",
          f"--merge: status {status}\n{out}\n{err}\nthe shards printed: {shard_lines}")

    status, out, err = campaign_cli("--merge", str(files[0]))
    check(status == 2 and "1 of the 2 runs are missing" in err and str(records[1]["seed"]) in err,
          f"--merge of one shard of two: {status}\n{out}\n{err}")
    foreign = tmp_path / "foreign.jsonl"
    record = dict(records[0], failseed=records[0]["failseed"] + 1)
    foreign.write_text(json.dumps(record) + "\n")
    status, _, err = campaign_cli("--merge", str(files[1]), str(foreign))
    check(status == 2 and "not what this checkout draws" in err, f"--merge of changed settings: {status} {err}")
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text('{"seed": 1\n')
    status, _, err = campaign_cli("--merge", str(damaged), str(tmp_path / "absent.jsonl"))
    check(status == 2 and f"{damaged}:1: not JSON" in err, f"--merge of a damaged file: {status} {err}")
    status, _, err = campaign_cli("--merge", str(tmp_path / "absent.jsonl"))
    check(status == 2 and "absent.jsonl" in err and "No such file" in err, f"--merge of no file: {status} {err}")


def outcome_of(console, status):
    ok, reason = campaign.judge(status, console, campaign.DEFAULT_TIMEOUT_S)
    return campaign.Outcome(ok, reason, status, console, 1.0)


def test_replay_explains_an_expected_fail():
    """--replay's account of a run whose workload met the injected failures: the armed
    sites, the kernel's record, where the workload met them, why FAIL is expected."""
    run = campaign.draw(1000)
    console = ("ktest[1]: fork with fail-nth 1 (0.11 copy_process returns EAGAIN): EAGAIN\n"
               "oom: out of memory (injected: a failure at site do_no_page, not a real shortage), "
               "killing pid 2 (ktest)\n"
               "run: page faults since boot: 1 zero page, 1 out of memory, killed\n"
               "run: injected failures (failseed 5): do_no_page failed 1 of 3 calls\n"
               "VERDICT: FAIL init did not exit with 0 (code 1)\n")
    text = "\n".join(campaign.explain(run, outcome_of(console, campaign.STATUS_FAIL)))
    for site in run["sites"]:
        check(f"armed {site['site']}: probability {site['probability']}%" in text, text)
    check("the kernel's record: injected failures (failseed 5): do_no_page failed 1 of 3 calls" in text
          and "replay:   oom: out of memory (injected" in text and "EAGAIN" in text
          and "replay:   run: page faults" not in text
          and "expected: init met the injected failures" in text
          and "the run PASSES" in text and "the workload's FAIL is the expected outcome" in text, text)


def test_replay_explains_a_kernel_failure():
    run = campaign.draw(1001)
    console = ("run: injected failures (failseed 5): page_table failed 2 of 9 calls\n"
               "VERDICT: FAIL init did not exit with 0 (code 1)\n"
               "VERDICT: FAIL lost some free pages: 10 free, 12 before (2 leaked)\n")
    text = "\n".join(campaign.explain(run, outcome_of(console, campaign.STATUS_FAIL)))
    check("the kernel's failure" in text and "the run FAILS: VERDICT: FAIL lost some free pages" in text, text)
    text = "\n".join(campaign.explain(run, outcome_of("VERDICT: PASS (init exited 0)\n", campaign.STATUS_PASS)))
    check("no record of injected failures" in text and "the workload passed" in text
          and "expected outcome" not in text, text)
