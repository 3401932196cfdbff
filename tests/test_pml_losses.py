"""Any pytorch-metric-learning loss by name (issue 16), and the cited rows of DM²
Tables 2 and 3 re-run under DM²'s protocol."""

from __future__ import annotations

import inspect

import pandas as pd
import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from benchmark.cli import main
from benchmark.config import LossConfig, OptimConfig
from benchmark.errors import ConfigError
from benchmark.losses import build_metric_loss
from benchmark.losses.registry import derive_name
from benchmark.losses.registry import pml_losses as registry_losses
from benchmark.losses.registry import pml_miners as registry_miners
from benchmark.recipes import Catalog, Context, expand, select
from benchmark.train.common import build_optimizer, param_groups


def test_every_pml_loss_has_a_derived_name():
    expected = {
        "MultiSimilarityLoss": "multi_similarity", "MarginLoss": "margin", "SoftTripleLoss": "soft_triple",
        "ProxyAnchorLoss": "proxy_anchor", "NormalizedSoftmaxLoss": "normalized_softmax",
        "LiftedStructureLoss": "lifted_structure", "NPairsLoss": "n_pairs", "CircleLoss": "circle",
        "SupConLoss": "supcon", "ProxyNCALoss": "proxy_nca", "TripletMarginLoss": "triplet_margin",
        "GeneralizedLiftedStructureLoss": "generalized_lifted_structure", "ArcFaceLoss": "arcface",
    }
    for cls_name, name in expected.items():
        assert derive_name(getattr(pml_losses, cls_name), "Loss") == name
    reg = registry_losses()
    by_class = {e.cls: n for n, e in reg.items()}
    concrete = [c for c in vars(pml_losses).values()
                if inspect.isclass(c) and issubclass(c, pml_losses.BaseMetricLossFunction)
                and c not in (pml_losses.BaseMetricLossFunction, pml_losses.GenericPairLoss)]
    assert len(concrete) >= 30 and set(concrete) == set(by_class)  # every one, abstract bases left out
    assert len(set(by_class.values())) == len(by_class)
    assert derive_name(pml_miners.MultiSimilarityMiner, "Miner") == "multi_similarity"
    assert "distance_weighted" in registry_miners() and "batch_hard" in registry_miners()
    # BatchHardMiner fixes its parent's strategies itself: they are not settable
    assert "pos_strategy" not in registry_miners()["batch_hard"].params


@pytest.mark.parametrize("name", sorted(n for n in registry_losses()
                                        if n not in ("ranked_list", "manifold", "histogram", "vicreg")))
def test_every_pml_loss_builds_and_backpropagates(name):
    """Defaults suffice (the four left out need stated values or paired views)."""
    torch.manual_seed(0)
    loss = build_metric_loss(LossConfig(name=name), num_classes=4, embedding_dim=8)
    emb = torch.nn.functional.normalize(torch.randn(16, 8), dim=1).requires_grad_()
    labels = torch.arange(4).repeat_interleave(4)
    value = loss(emb, labels)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()


def test_unknown_name_and_param_are_one_line_errors_listing_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        build_metric_loss(LossConfig(name="hinge"), 4, 8)
    msg = str(e.value)
    assert "\n" not in msg and "loss.name" in msg and "'hinge'" in msg
    assert "multi_similarity" in msg and "soft_triple" in msg and "triplet" in msg
    with pytest.raises(ConfigError) as e:
        build_metric_loss(LossConfig(name="multi_similarity", params={"alfa": 2}), 4, 8)
    assert str(e.value) == "loss.params.alfa: unknown parameter for loss 'multi_similarity' (known: alpha, beta, base)"
    with pytest.raises(ConfigError, match=r"loss.params.num_classes: set by the harness"):
        build_metric_loss(LossConfig(name="soft_triple", params={"num_classes": 3}), 4, 8)
    with pytest.raises(ConfigError, match=r"loss.params.margin: required by loss 'ranked_list'"):
        build_metric_loss(LossConfig(name="ranked_list"), 4, 8)
    with pytest.raises(ConfigError, match=r"loss.params.alpha: expected a number"):
        build_metric_loss(LossConfig(name="multi_similarity", params={"alpha": "two"}), 4, 8)
    with pytest.raises(ConfigError, match=r"loss.miner_params.eps: unknown parameter for miner 'multi_similarity' "
                                          r"\(known: epsilon\)"):
        build_metric_loss(LossConfig(name="multi_similarity", miner="multi_similarity",
                                     miner_params={"eps": 0.1}), 4, 8)
    with pytest.raises(ConfigError, match=r"loss.miner: unknown miner 'hardest'.*batch_hard"):
        build_metric_loss(LossConfig(name="margin", miner="hardest"), 4, 8)


@pytest.mark.parametrize("extra, expect", [
    (["--set", "loss.name=hinge"], ["--set loss.name: unknown loss 'hinge'", "multi_similarity"]),
    (["--set", "loss.name=multi_similarity", "--set", "loss.params.alfa=2"],
     ["loss.params.alfa: unknown parameter for loss 'multi_similarity' (known: alpha, beta, base)"]),
])
def test_cli_refuses_a_bad_loss_in_one_line(extra, expect, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_HOME", str(tmp_path))
    rc = main(["plan", "dm2/table1", "--profile", "smoke", "--row", "Independent", "--dataset", "cub200", *extra])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "Traceback" not in err and all(e in err for e in expect), err


def test_a_loss_with_own_weights_is_sized_and_trained_with_loss_lr():
    loss = build_metric_loss(LossConfig(name="soft_triple", params={"centers_per_class": 3}),
                             num_classes=7, embedding_dim=16)
    (weights,) = list(loss.parameters())
    assert sorted(weights.shape) == [16, 21]  # embedding x (classes x centres)
    assert loss.num_classes == 7  # labels are checked against the training classes
    model = torch.nn.Linear(4, 16)
    opt = build_optimizer(OptimConfig(lr=3e-5, loss_lr=0.01),
                          param_groups(OptimConfig(lr=3e-5, loss_lr=0.01), model.parameters(), loss.parameters()))
    assert [g["lr"] for g in opt.param_groups] == [3e-5, 0.01]
    assert opt.param_groups[1]["params"][0] is weights
    for name, shape in (("proxy_anchor", [16, 7]), ("normalized_softmax", [16, 7]), ("margin", [7])):
        (w,) = list(build_metric_loss(LossConfig(name=name, params={"learn_beta": True} if name == "margin" else {}),
                                      num_classes=7, embedding_dim=16).parameters())
        assert sorted(w.shape) == sorted(shape), name


def test_dm2_mutual_loss_composes_with_a_pml_loss_on_a_cohort():
    """`--set loss.name=...` on a cohort recipe: the cohort keeps its members and λ; each
    member gets its own loss (own weights, own optimiser group); the triplet's miner goes."""
    from benchmark.recipes import override_layer
    from benchmark.train.cohort import CohortMethod

    catalog = Catalog()
    ctx = Context(profile="smoke", rows=["MD+TD+VD"], datasets=["cub200"],
                  overrides=[override_layer("loss.name", "proxy_anchor", "--set loss.name")])
    (spec,) = expand(catalog, select(catalog, "dm2/table1"), ctx)
    cfg = spec.config
    assert cfg.loss.name == "proxy_anchor" and cfg.loss.miner is None and cfg.loss.params == {}
    assert len(cfg.cohort.members) == 4 and cfg.cohort.lambda_mutual == 20
    method = CohortMethod(cfg, 12, torch.device("cpu"))
    assert all(len(o.param_groups) == 2 for o in method.optimizers)
    assert method.losses[0].loss.proxies is not method.losses[1].loss.proxies


# The papers' six losses keep their runs (paper profile, cub200 / cars196, seed 0):
# hashes made before any pml loss could be named.
PINNED = {
    "e02e95867dcc": ("dm2/table1", "triplet"),
    "af5f471f1824": ("dm2/table6", "contrastive"),
    "76cf6268c07f": ("dm2/table6", "binomial_deviance"),
    "204a3672251b": ("dm2/table6", "proxy_nca"),
    "474a10372cc0": ("dm2/table6", "arcface"),
    "f061e64790d3": ("abe/figure5", "abe_contrastive"),
}


def test_the_papers_losses_keep_their_run_hashes():
    catalog = Catalog()
    specs = expand(catalog, select(catalog, "dm2/table1,dm2/table6,abe/figure5"), Context(profile="paper"))
    by_hash = {s.hash: s for s in specs}
    for h, (_, loss) in PINNED.items():
        assert h in by_hash and by_hash[h].config.loss.name == loss, (h, loss)


# What each cited paper states, checked against the re-run rows (paper profile).
CITED = {
    ("dm2/table2", "Margin [31]"): ("resnet50", 128, "margin", {"margin": 0.2, "beta": 1.2, "learn_beta": True},
                                    "distance_weighted", {"cutoff": 0.5, "nonzero_loss_cutoff": 1.4}),
    ("dm2/table2", "MS [30]"): ("bn_inception", 512, "multi_similarity", {"alpha": 2, "beta": 50, "base": 1},
                                "multi_similarity", {"epsilon": 0.1}),
    ("dm2/table2", "SoftTriplet [21]"): ("bn_inception", 512, "soft_triple",
                                         {"centers_per_class": 10, "la": 20, "gamma": 0.1, "margin": 0.01}, None, {}),
    ("dm2/table2", "NSM [37]"): ("bn_inception", 512, "normalized_softmax", {"temperature": 0.05}, None, {}),
    ("dm2/table3", "MS [30]"): ("bn_inception", 512, "multi_similarity", {"alpha": 2, "beta": 50, "base": 1},
                                "multi_similarity", {"epsilon": 0.1}),
    ("dm2/table3", "NSM [37]"): ("bn_inception", 512, "normalized_softmax", {"temperature": 0.05}, None, {}),
}


def test_rerun_rows_use_the_cited_papers_stated_values_under_dm2s_protocol():
    catalog = Catalog()
    specs = expand(catalog, select(catalog, "dm2/table2,dm2/table3"), Context(profile="paper"))
    defaults = next(s.config for s in specs if any(c.row == "Triplet + DM² (BNI-512)" for c in s.cells)
                    and s.config.data.dataset == "cub200")
    for (table, row), (arch, dim, loss, params, miner, miner_params) in CITED.items():
        recipe = catalog.recipe(table)
        assert recipe.rows[row].rerun and catalog.table(table).row(row).cited
        mine = [s for s in specs if any(c.row == row and c.table == table.split("/")[1] for c in s.cells)]
        assert mine, row
        for s in mine:
            cfg = s.config
            (member,) = cfg.cohort.members  # one model, no mutual loss
            assert (member.arch, member.embedding_dim) == (arch, dim), row
            assert (cfg.loss.name, cfg.loss.params, cfg.loss.miner, cfg.loss.miner_params) == (
                loss, params, miner, miner_params), row
            # DM²'s protocol: its optimiser, schedule and augmentation
            assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == ("adam", 3e-5, 5e-4)
            assert cfg.schedule.epochs == defaults.schedule.epochs
            assert cfg.data.train_transform == defaults.data.train_transform and cfg.data.crop_size == 256
        stated = recipe.rows[row].stated
        assert all(k.startswith("loss.") for k in stated) and stated, row
        if table == "dm2/table2":  # Table 3 refers to Table 2's reasons
            assert recipe.rows[row].assumed, row


def test_report_json_of_a_rerun_cited_row_keeps_the_cited_number(tmp_path):
    from test_report_collect import FakeStore

    from benchmark.report.cells import collect_tables, records, selected_tables
    from benchmark.report.markdown import markdown_table

    catalog = Catalog()
    specs = expand(catalog, select(catalog, "dm2/table2"), Context(profile="smoke", datasets=["cub200"]))
    (ms,) = [s for s in specs if any(c.row == "MS [30]" for c in s.cells)]
    metrics = {f"final/member1/recall_at_{k}": 40.0 + k for k in (1, 2, 4, 8)}
    df = collect_tables(catalog, selected_tables(catalog, "dm2/table2"), "smoke", FakeStore([(ms, metrics)])).df
    cell = df[(df["row"] == "MS [30]") & (df["column"] == "cub_r1")].iloc[0]
    assert bool(cell["cited"]) and cell["paper_value"] == 65.7 and cell["reproduced"] == 41.0 and cell["n"] == 1
    assert pd.isna(cell["variant"])
    other = df[(df["row"] == "HORDE [10]") & (df["column"] == "cub_r1")].iloc[0]  # cited, not re-run
    assert bool(other["cited"]) and other["paper_value"] == 66.3 and pd.isna(other["reproduced"])
    text = markdown_table(catalog.table("dm2/table2"), records(df))
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| MS [30] ‡"))
    assert "cited (its own protocol)" in lines[start] and "65.7" in lines[start]
    assert "re-run (DM² protocol)" in lines[start + 1] and "41.0 (n=1)" in lines[start + 1]
    assert "Δ re-run − cited" in lines[start + 2] and "-24.7" in lines[start + 2]
    horde = next(ln for ln in lines if ln.startswith("| HORDE [10] ‡"))
    assert "| paper" in horde and "re-run" not in text.split("| HORDE [10] ‡")[1].split("\n")[1]


def test_a_cited_row_is_run_only_when_marked_as_a_rerun(tmp_path):
    from benchmark.recipes import Catalog as Cat

    root = tmp_path
    (root / "tables" / "p").mkdir(parents=True)
    (root / "recipes" / "p").mkdir(parents=True)
    (root / "tables" / "p" / "t.yaml").write_text(
        "paper: p\nid: t\nkind: table\ntitle: t\ncolumns:\n"
        "  - {id: c, header: c, dataset: cub200, metric: recall@1, source: member1}\n"
        "rows:\n  - {name: Own, cited: false, values: [1.0]}\n  - {name: Quoted, cited: true, values: [2.0]}\n")
    (root / "recipes" / "p" / "defaults.yaml").write_text("config: {method: cohort}\n")
    rec = root / "recipes" / "p" / "t.yaml"
    rec.write_text("extends: defaults\nrows:\n  Own: {}\n  Quoted: {set: {loss.name: margin}}\n")
    with pytest.raises(ConfigError, match=r"rows.Quoted: a cited row is never run.*rerun: true"):
        Cat(root).recipe("p/t")
    rec.write_text("extends: defaults\nrows:\n  Own: {rerun: true}\n  Quoted: {}\n")
    with pytest.raises(ConfigError, match=r"rows.Own.rerun: only a cited row is re-run"):
        Cat(root).recipe("p/t")
