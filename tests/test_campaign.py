"""test_campaign: the fixed-seed failure-injection campaign (16 runs drawn from seed 1),
each run a test, judged as scripts/campaign judges it (pgtest.campaign): the kernel must
survive and clean up whatever the injected failures did to the workload."""

import pytest
from pgtest import campaign

RUNS = [campaign.draw(seed) for seed in campaign.seeds(campaign.FIXED_SEED, campaign.FIXED_RUNS)]


@pytest.mark.timeout(campaign.DEFAULT_TIMEOUT_S + 60)
@pytest.mark.parametrize("run", RUNS, ids=[str(run["seed"]) for run in RUNS])
def test_campaign_run(run, workdir, built):
    outcome = campaign.execute(run, workdir, accel=built.accel)
    assert outcome.ok, (f"seed {run['seed']}: {run['workload']} -m {run['mem']}: {outcome.reason}\n"
                        f"reproduce: {campaign.replay_command(run['seed'])}\n"
                        f"kernel command line: {run['cmdline']}\n"
                        + "\n".join(outcome.console.splitlines()[-30:]))
