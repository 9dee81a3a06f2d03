"""Data-parallel training (torchrun's environment, gloo, 2 CPU processes): the ranks stay
identical, and the run agrees with a single-process run of the same config (batch norm over
fixed-size groups, global-batch mining, gathered memory updates: smcr.training.dist)."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from smcr.config import ConfigError, load_config
from smcr.training import train
from test_train_pipeline import tiny


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp, cache, name):
    return tiny(tmp / name, cache, **{
        "data.bn_group": 8,
        "smcr.branches": "both",
        "translator": {"enabled": True, "options": {
            "epochs": 1, "decay_epochs": 0, "iters_per_epoch": 2, "batch_size": 4,
            "ide_pretrain_epochs": 1, "ngf": 8, "ndf": 8, "n_res_blocks": 1}},
        "pretrain.iters": 4,
        "schedule.iters": 4,
        "run.ranked_lists": 0,
    })


def _run(cfg, rank=0, world=1, port=0, out=None):
    """Train `cfg` as rank `rank` of `world`; save what the ranks must agree on."""
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                          WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    seen = {"records": [], "weights": []}

    def callback(event, info):
        if event == "models":
            seen["weights"].append({
                f"{kind}/{name}": torch.cat([t.detach().reshape(-1).double()
                                             for t in m.state_dict().values()
                                             if t.is_floating_point()])
                for kind in ("students", "teachers") for name, m in info[kind].items()
            })
        elif event in ("cluster", "epoch", "eval"):
            seen["records"].append(info)

    result = train(cfg, progress=False, callback=callback)
    seen["metrics"] = result.metrics
    if out is not None:
        torch.save(seen, out)
    return seen


def _spawned(rank, world, port, cfg, folder):
    _run(cfg, rank, world, port, os.path.join(folder, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ddp_cache")


def test_two_gloo_processes_agree_with_each_other_and_with_one_process(tmp_path, cache):
    single = _run(_config(tmp_path, cache, "single"))  # also fills the cache (data, translator)
    cfg = _config(tmp_path, cache, "ddp")
    mp.start_processes(_spawned, args=(2, _free_port(), cfg, str(tmp_path)), nprocs=2,
                       start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    # the two ranks hold the same networks after every epoch, bit for bit
    assert len(r0["weights"]) == len(r1["weights"]) == 2
    for w0, w1 in zip(r0["weights"], r1["weights"], strict=True):
        for k in w0:
            assert torch.equal(w0[k], w1[k]), k
    assert r0["metrics"] == r1["metrics"]
    # and the run matches one process up to summation order
    clusters = lambda s: [(r["branch"], r["clusters"], r["un_clustered"])  # noqa: E731
                          for r in s["records"] if "clusters" in r]
    assert clusters(r0) == clusters(single)
    losses = lambda s: [r for r in s["records"] if r.get("stage") == "refine"]  # noqa: E731
    for a, b in zip(losses(r0), losses(single), strict=True):
        for k in a:
            if k.startswith("loss"):
                assert a[k] == pytest.approx(b[k], rel=1e-3, abs=1e-4), k
    for w_d, w_s in zip(r0["weights"], single["weights"], strict=True):
        for k in w_d:
            # Adam can amplify a rounding difference in a near-zero gradient: compare norms
            assert (w_d[k] - w_s[k]).norm() <= 1e-4 * w_s[k].norm(), k
    for name, m in single["metrics"].items():
        assert r0["metrics"][name]["mAP"] == pytest.approx(m["mAP"], abs=0.02), name
    # rank 0 alone wrote the run folder
    assert (tmp_path / "ddp" / "run" / "checkpoint.pt").is_file()


def test_batches_that_do_not_split_into_whole_bn_groups_are_refused(tmp_path):
    cfg = load_config(tiny(tmp_path, tmp_path, **{"data.bn_group": 8}))
    cfg.check_world(2)  # 16 per domain -> 8 per process: one group each
    with pytest.raises(ConfigError, match="data.bn_group"):
        cfg.check_world(4)
    with pytest.raises(ConfigError, match="does not split"):
        cfg.check_world(3)
