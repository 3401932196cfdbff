"""The recipes against the papers' stated settings (expansion only, no training).

Each test resolves the project's recipes (recipes/, tables/) into run specs and
checks what the papers state: DM² Sec. 4.2-4.8 and ABE Sec. 4-6. It also checks
the structure the harness relies on: shared runs have one hash, teachers come
before their students and are reused, every cell of every table is filled by a
run that logs the right source and computes the right metric, and the smoke
profile stays small and valid.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from benchmark import config as C
from benchmark.recipes.layers import merge_layer

from benchmark.recipes import Catalog, Context, config_hash, expand, select

PROFILES = ("paper", "smoke")
PAPERS = ("dm2", "abe")
CUB_CARS = ("cub200", "cars196")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog()


@pytest.fixture(scope="module")
def expanded(catalog):
    """(paper, profile) -> list of RunSpec, for seed 0."""
    return {
        (paper, prof): expand(catalog, select(catalog, paper), Context(profile=prof, seeds=[0]))
        for paper in PAPERS
        for prof in PROFILES
    }


def cell_index(specs) -> dict[tuple[str, str, str], object]:
    """(table, row, column) -> the spec whose run fills that cell."""
    out = {}
    for s in specs:
        for c in s.cells:
            key = (c.table, c.row, c.column)
            assert key not in out or out[key] is s, f"cell {key} filled by two runs"
            out[key] = s
    return out


def spec_at(specs, table, row, column):
    return cell_index(specs)[(table, row, column)]


def cell_of(spec, table, row, column):
    return next(c for c in spec.cells if (c.table, c.row, c.column) == (table, row, column))


def dm2_specs(expanded, profile="paper"):
    return expanded[("dm2", profile)]


def update_probabilities(cohort: C.CohortConfig) -> list[float]:
    """p^l = base^(rank of l among the members of its architecture) (DM² Sec. 3.2, 4.7)."""
    seen: dict[str, int] = defaultdict(int)
    out = []
    for m in cohort.members:
        out.append(cohort.temporal.base ** seen[m.arch])
        seen[m.arch] += 1
    return out


# ---------------------------------------------------------------------------
# DM²: Sec. 4.2 settings on every cohort and student
# ---------------------------------------------------------------------------


def test_dm2_stated_training_settings(expanded):
    for s in dm2_specs(expanded):
        cfg = s.config
        large = cfg.data.dataset in ("sop", "inshop")
        assert cfg.optim.name == "adam" and cfg.optim.lr == 3e-5 and cfg.optim.weight_decay == 5e-4, s.label
        assert cfg.data.batch_size == 120, s.label
        assert cfg.data.sampler == "class_balanced"
        assert cfg.data.images_per_class == (2 if large else 5), s.label
        assert cfg.data.crop_size == 256 and cfg.data.hflip, s.label
        # Sec. 4.2 follows HORDE: 256x256 random crop of a randomly resized image
        # (HORDE's longer side in [0.8, 1.8] x 256; test: 293x293, centre 256)
        assert cfg.data.train_transform == "multi_resolution_crop", s.label
        assert cfg.data.multires_range == (0.8, 1.8), s.label
        assert (cfg.data.test_transform, cfg.data.resize_size) == ("resize_square_center_crop", 293), s.label
        assert cfg.data.synthetic is None
        models = cfg.cohort.members if cfg.method == "cohort" else [cfg.distill.student]
        for m in models:
            assert m.pretrained, s.label
            assert m.freeze_bn is (not large), s.label  # frozen on CUB/Cars, trained on SOP/In-Shop
            assert m.arch in ("bn_inception", "resnet50")


def test_dm2_triplet_dm2_cohorts(expanded):
    """lambda 20 with a 3-epoch warm-up, p = 1, .5, .25, .125, distance-weighted triplets."""
    n = 0
    for s in dm2_specs(expanded):
        cfg = s.config
        if cfg.method != "cohort" or cfg.loss.name != "triplet" or cfg.cohort.lambda_mutual == 0:
            continue
        n += 1
        c = cfg.cohort
        assert c.lambda_mutual == 20.0 and c.lambda_warmup_epochs == 3.0, s.label
        assert c.temporal.base == 0.5 and c.temporal.per_architecture and c.model_diversity
        if not {cell.row for cell in s.cells} <= {"MD", "MD+TD", "MD+VD"}:  # Table 1's ablations
            assert c.temporal.enabled and c.view_diversity, s.label
        assert cfg.loss.miner == "distance_weighted"
    assert n >= 10
    main = spec_at(dm2_specs(expanded), "table1", "MD+TD+VD", "cub_net_a").config
    assert len(main.cohort.members) == 4
    assert all(m.arch == "bn_inception" and m.embedding_dim == 512 for m in main.cohort.members)
    assert update_probabilities(main.cohort) == [1.0, 0.5, 0.25, 0.125]


def test_dm2_table1_diversity_switches(expanded):
    specs = dm2_specs(expanded)
    want = {  # row -> (lambda > 0, temporal, view)
        "Independent": (False, False, True),
        "MD": (True, False, False),
        "MD+TD": (True, True, False),
        "MD+VD": (True, False, True),
        "MD+TD+VD": (True, True, True),
    }
    for row, (mutual, temporal, view) in want.items():
        c = spec_at(specs, "table1", row, "cars_ens").config.cohort
        assert (c.lambda_mutual > 0, c.temporal.enabled, c.view_diversity) == (mutual, temporal, view), row


def test_dm2_table2_backbones_and_sop(expanded):
    specs = dm2_specs(expanded)
    for row, arch, dim in [("Triplet + DM² (R50-128)", "resnet50", 128),
                           ("Triplet + DM² (R50-512)", "resnet50", 512),
                           ("Triplet + DM² (BNI-512)", "bn_inception", 512)]:
        for col in ("cub_r1", "cars_r8", "sop_r1000"):
            cfg = spec_at(specs, "table2", row, col).config
            assert len(cfg.cohort.members) == 4
            assert {(m.arch, m.embedding_dim) for m in cfg.cohort.members} == {(arch, dim)}
        sop = spec_at(specs, "table2", row, "sop_r1").config
        assert sop.data.dataset == "sop" and sop.data.images_per_class == 2
        assert not any(m.freeze_bn for m in sop.cohort.members)
        assert sop.eval.recall_ks == [1, 10, 100, 1000]
    inshop = spec_at(specs, "table3", "Triplet + DM²", "inshop_r30").config
    assert inshop.data.images_per_class == 2 and inshop.eval.recall_ks == [1, 10, 20, 30]
    assert not any(m.freeze_bn for m in inshop.cohort.members)


def test_dm2_table4_distillation(expanded):
    specs = dm2_specs(expanded)
    want = {
        "RKD-DA": ("rkd_da", {"w_distance": 20.0, "w_angle": 40.0}, 0.0),
        "DarkRank": ("darkrank", {"alpha": 3.0, "beta": 3.0, "lam": 1.0, "k": 4}, 1.0),
        "Compact": ("compact", {"lam": 10.0}, 1.0),
        "DM² → RKD-DA": ("rkd_da", {"w_distance": 20.0, "w_angle": 40.0}, 0.0),
    }
    for ds, prefix in (("cub200", "cub"), ("cars196", "cars")):
        for row, (loss, params, metric_weight) in want.items():
            for size in (2, 4):
                s = spec_at(specs, "table4", row, f"{prefix}_{size}x_s")
                assert s is spec_at(specs, "table4", row, f"{prefix}_{size}x_t")
                d = s.config.distill
                assert s.config.method == "distill" and s.dataset == ds
                assert (d.loss, d.params, d.metric_weight) == (loss, params, metric_weight), row
                assert (d.student.arch, d.student.embedding_dim, d.student.pretrained) == ("bn_inception", 512, True)
                assert cell_of(s, "table4", row, f"{prefix}_{size}x_t").source == "teacher"
                assert cell_of(s, "table4", row, f"{prefix}_{size}x_s").source == "student"
                t = d.teacher.cohort
                assert len(t.members) == size and {m.arch for m in t.members} == {"bn_inception"}
                if row == "DM² → RKD-DA":
                    assert t.lambda_mutual == 20.0 and t.temporal.enabled and t.view_diversity
                else:
                    assert t.lambda_mutual == 0.0
        # DM²: T = the cohort's ensemble, S = its first model; no distillation.
        for size in (2, 4):
            s = spec_at(specs, "table4", "DM²", f"{prefix}_{size}x_t")
            assert s.config.method == "cohort" and len(s.config.cohort.members) == size
            assert cell_of(s, "table4", "DM²", f"{prefix}_{size}x_t").source == "ensemble"
            assert cell_of(s, "table4", "DM²", f"{prefix}_{size}x_s").source == "member1"
        base = spec_at(specs, "table4", "Baseline", f"{prefix}_2x_s")
        assert base is spec_at(specs, "table4", "Baseline", f"{prefix}_4x_s")
        assert len(base.config.cohort.members) == 1 and base.config.cohort.lambda_mutual == 0


def test_dm2_table5_heterogeneous_cohorts(expanded):
    specs = dm2_specs(expanded)
    b, r = "bn_inception", "resnet50"
    want = {  # row -> (architectures, BNI member, R50 member, update probabilities)
        "4×BNI": ([b, b, b, b], "member1", None, [1, 0.5, 0.25, 0.125]),
        "3×BNI 1×R50": ([b, b, b, r], "member1", "member4", [1, 0.5, 0.25, 1]),
        "2×BNI 2×R50": ([b, b, r, r], "member1", "member3", [1, 0.5, 1, 0.5]),
        "1×BNI 3×R50": ([b, r, r, r], "member1", "member2", [1, 1, 0.5, 0.25]),
        "4×R50": ([r, r, r, r], None, "member1", [1, 0.5, 0.25, 0.125]),
    }
    idx = cell_index(specs)
    for ds in ("cub", "cars"):
        for row, (archs, bni, r50, probs) in want.items():
            s = spec_at(specs, "table5", row, f"{ds}_ens")
            c = s.config.cohort
            assert [m.arch for m in c.members] == archs, row
            assert {m.embedding_dim for m in c.members} == {512}
            assert update_probabilities(c) == probs, row
            assert c.temporal.per_architecture
            for role, member in (("bni", bni), ("r50", r50)):
                col = f"{ds}_{role}_single"
                if member is None:
                    assert ("table5", row, col) not in idx
                    continue
                assert spec_at(specs, "table5", row, col) is s
                src = cell_of(s, "table5", row, col).source
                assert src == member and archs[int(src[len("member"):]) - 1] == (b if role == "bni" else r)
        for role, arch in (("bni", b), ("r50", r)):
            base = spec_at(specs, "table5", "Baseline", f"{ds}_{role}_single")
            assert [m.arch for m in base.config.cohort.members] == [arch]


def test_dm2_table6_losses(expanded):
    specs = dm2_specs(expanded)
    want = {
        "Contrastive": ("contrastive", {"margin": 1.0, "pos_margin": 0.0}, 20.0),
        "Triplet": ("triplet", {"margin": 0.2}, 20.0),
        "Binomial-Deviance": ("binomial_deviance", {"alpha": 2.0, "beta": 0.5, "c": 25.0}, 20.0),
        "Proxy-NCA": ("proxy_nca", {}, 100.0),
        "ArcFace": ("arcface", {"scale": 64.0, "margin": 0.5}, 2000.0),
    }
    for ds in ("cub", "cars"):
        for row, (name, params, lam) in want.items():
            indep = spec_at(specs, "table6", row, f"{ds}_indep_single")
            dm2 = spec_at(specs, "table6", row, f"{ds}_dm2_single")
            assert indep is spec_at(specs, "table6", row, f"{ds}_indep_ens")
            assert dm2 is spec_at(specs, "table6", row, f"{ds}_dm2_ens")
            for s in (indep, dm2):
                cfg = s.config
                assert (cfg.loss.name, cfg.loss.params) == (name, params), row
                assert cfg.loss.miner == ("distance_weighted" if name == "triplet" else None), row
                if cfg.loss.miner is None:
                    assert cfg.loss.miner_params == {}
                assert len(cfg.cohort.members) == 4
                assert {(m.arch, m.embedding_dim) for m in cfg.cohort.members} == {("bn_inception", 512)}
            assert indep.config.cohort.lambda_mutual == 0.0
            assert dm2.config.cohort.lambda_mutual == lam and dm2.config.cohort.lambda_warmup_epochs == 3.0
            assert dm2.config.cohort.temporal.enabled and dm2.config.cohort.view_diversity
            # Independent = Table 1's Independent setting with this loss
            t1 = spec_at(specs, "table1", "Independent", f"{ds}_net_a").config.cohort
            ic = indep.config.cohort
            assert (ic.temporal.enabled, ic.view_diversity) == (t1.temporal.enabled, t1.view_diversity)


def test_dm2_figures(expanded):
    specs = dm2_specs(expanded)
    for n in (1, 2, 3, 4):
        dm2 = spec_at(specs, "figure2", f"DM² (cohort {n})", "cub_single").config.cohort
        ind = spec_at(specs, "figure2", f"Independent (cohort {n})", "cub_single").config.cohort
        assert len(dm2.members) == len(ind.members) == n
        assert ind.lambda_mutual == 0.0
        assert dm2.lambda_mutual == (20.0 if n > 1 else 0.0)
    for row, n in (("Independent", 1), ("DM² (2 models)", 2), ("DM² (3 models)", 3), ("DM² (4 models)", 4)):
        s = spec_at(specs, "figure3", row, "cars_member1")
        assert len(s.config.cohort.members) == n
        assert cell_of(s, "figure3", row, "cars_member1").source == "member1"


# ---------------------------------------------------------------------------
# Shared runs, teachers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_dm2_shared_runs_have_one_hash(expanded, profile):
    specs = dm2_specs(expanded, profile)
    for ds in ("cub", "cars"):
        h = lambda t, r, c: spec_at(specs, t, r, c).hash  # noqa: E731
        full = {
            h("table1", "MD+TD+VD", f"{ds}_net_a"),
            h("table5", "4×BNI", f"{ds}_ens"),
            h("table6", "Triplet", f"{ds}_dm2_single"),
            h("table4", "DM²", f"{ds}_4x_t"),
            h("table2", "Triplet + DM² (BNI-512)", f"{ds}_r1"),
            h("figure2", "DM² (cohort 4)", f"{ds}_ens"),
            h("figure3", "DM² (4 models)", f"{ds}_member1"),
            spec_at(specs, "table4", "DM² → RKD-DA", f"{ds}_4x_s").teacher.hash,
        }
        assert len(full) == 1
        indep = {
            h("table1", "Independent", f"{ds}_ens"),
            h("table6", "Triplet", f"{ds}_indep_ens"),
            h("figure2", "Independent (cohort 4)", f"{ds}_ens"),
            *(spec_at(specs, "table4", r, f"{ds}_4x_s").teacher.hash for r in ("RKD-DA", "DarkRank", "Compact")),
        }
        assert len(indep) == 1
        single = {
            h("figure2", "DM² (cohort 1)", f"{ds}_single"),
            h("figure2", "Independent (cohort 1)", f"{ds}_single"),
            h("figure3", "Independent", f"{ds}_member1"),
            h("table4", "Baseline", f"{ds}_4x_s"),
            h("table5", "Baseline", f"{ds}_bni_single"),
        }
        assert len(single) == 1
        pair_indep = {
            h("figure2", "Independent (cohort 2)", f"{ds}_ens"),
            *(spec_at(specs, "table4", r, f"{ds}_2x_s").teacher.hash for r in ("RKD-DA", "DarkRank", "Compact")),
        }
        assert len(pair_indep) == 1
        pair_dm2 = {
            h("figure2", "DM² (cohort 2)", f"{ds}_ens"),
            h("table4", "DM²", f"{ds}_2x_t"),
            spec_at(specs, "table4", "DM² → RKD-DA", f"{ds}_2x_s").teacher.hash,
        }
        assert len(pair_dm2) == 1
        assert h("table2", "Triplet + DM² (R50-512)", f"{ds}_r1") == h("table5", "4×R50", f"{ds}_ens")


@pytest.mark.parametrize("profile", PROFILES)
def test_teachers_come_first_and_are_reused(expanded, profile):
    specs = dm2_specs(expanded, profile)
    position = {s.hash: i for i, s in enumerate(specs)}
    assert len(position) == len(specs), "duplicate hashes in an expansion"
    students = [s for s in specs if s.config.method == "distill"]
    assert len(students) == 16  # (RKD-DA, DarkRank, Compact, DM² → RKD-DA) x (2×, 4×) x (CUB, Cars)
    for s in students:
        assert s.teacher is not None and s.teacher.hash in position
        assert position[s.teacher.hash] < position[s.hash]
        assert specs[position[s.teacher.hash]] is s.teacher
        assert config_hash(s.config.distill.teacher) == s.teacher.hash
    teachers = {s.teacher.hash for s in students}
    assert len(teachers) == 8  # (independent, DM²) x (2, 4 models) x (CUB, Cars)
    for ds in ("cub", "cars"):
        for size in (2, 4):
            objs = {id(spec_at(specs, "table4", r, f"{ds}_{size}x_s").teacher) for r in ("RKD-DA", "DarkRank", "Compact")}
            assert len(objs) == 1


def test_teacher_follows_context(catalog):
    """A teacher reference resolves under the student's profile, seed and overrides."""
    from benchmark.recipes import override_layer

    ctx = Context(profile="smoke", seeds=[3], overrides=[override_layer("optim.lr", 0.002, "--set optim.lr")])
    specs = expand(catalog, select(catalog, "dm2/table4,dm2/table1"), ctx)
    t1 = {(s.label.split()[1], s.dataset): s.hash for s in specs if s.label.startswith("dm2/table1")}
    for s in specs:
        if s.config.method == "distill":
            t = s.config.distill.teacher
            assert t.seed == 3 and t.optim.lr == 0.002 and t.data.synthetic is not None
    rkd4 = [s for s in specs if s.config.method == "distill" and len(s.config.distill.teacher.cohort.members) == 4
            and s.config.distill.teacher.cohort.lambda_mutual == 0]
    assert rkd4 and all(s.teacher.hash == t1[("Independent", s.dataset)] for s in rkd4)


def test_scoped_override_reaches_only_its_run(catalog, tmp_path, capsys):
    """`tune` writes its best λ with a scope: in Table 6 it changes the row's DM²
    run and leaves the λ-0 Independent run (and the other dataset) alone; a
    scope that matches nothing selected is an error naming the file."""
    from benchmark.cli import main
    from benchmark.errors import ConfigError
    from benchmark.recipes import override_layer, parse_scope

    sel = select(catalog, "dm2/table6")
    base = Context(profile="smoke", rows=["Proxy-NCA"])
    scope = parse_scope({"recipe": "dm2/table6", "row": "Proxy-NCA", "where": {"group": "DM²"},
                         "dataset": "cub200"}, "best.yaml: scope")
    origin, layer = override_layer("cohort.lambda_mutual", 39.5, "best.yaml: cohort.lambda_mutual")
    plain = {s.label + str(s.config.cohort.lambda_mutual): s for s in expand(catalog, sel, base)}
    scoped = expand(catalog, sel, Context(profile="smoke", rows=["Proxy-NCA"], overrides=[(origin, layer, scope)]))
    lams = sorted((s.dataset, s.config.cohort.lambda_mutual) for s in scoped)
    assert lams == [("cars196", 0.0), ("cars196", 100.0), ("cub200", 0.0), ("cub200", 39.5)]
    assert sum(s.hash not in {p.hash for p in plain.values()} for s in scoped) == 1
    unscoped = expand(catalog, sel, Context(profile="smoke", rows=["Proxy-NCA"], overrides=[(origin, layer)]))
    assert sorted(s.config.cohort.lambda_mutual for s in unscoped) == [39.5] * 4  # what a plain file does
    with pytest.raises(ConfigError, match="best.yaml: cohort.lambda_mutual: scope .* matches none"):
        expand(catalog, select(catalog, "dm2/table1"), Context(profile="smoke", overrides=[(origin, layer, scope)]))
    # the same through the CLI, from a file
    f = tmp_path / "best.yaml"
    f.write_text("scope: {recipe: dm2/table6, row: Proxy-NCA, where: {group: DM²}, dataset: cub200}\n"
                 "set:\n  cohort.lambda_mutual: 39.5\n", encoding="utf-8")
    assert main(["plan", "dm2/table6", "--profile", "smoke", "--row", "Proxy-NCA", "--overrides", str(f)]) == 0
    capsys.readouterr()
    f.write_text("scope: {recipe: dm2/table6, rows: Proxy-NCA}\nset: {}\n", encoding="utf-8")
    assert main(["plan", "dm2/table6", "--profile", "smoke", "--overrides", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and f"{f}: scope.rows: unknown key" in err and "Traceback" not in err


# ---------------------------------------------------------------------------
# ABE: Sec. 4-6 settings
# ---------------------------------------------------------------------------

ROW_RE = re.compile(r"^(ABE-(?P<m>\d+)|(?P<h>\d+)-heads?)-(?P<d>\d+)( without L_div)?$")


def test_abe_stated_training_settings(expanded):
    for s in expanded[("abe", "paper")]:
        cfg = s.config
        a = cfg.abe
        assert cfg.method == "abe"
        assert cfg.optim.name == "sgd" and cfg.optim.momentum == 0.9
        assert cfg.data.sampler == "abe_pairs"
        assert cfg.data.batch_size == (40 if s.tables == ["abe/figure7b"] else 64), s.label
        assert cfg.data.train_transform == "resize_pad_random_crop" and cfg.data.test_transform == "resize_pad_center_crop"
        assert (cfg.data.resize_size, cfg.data.crop_size, cfg.data.hflip) == (256, 224, True)
        assert cfg.loss.name == "abe_contrastive" and cfg.loss.params == {"margin": 1.0, "pairs": "partners"}
        assert a.arch == "googlenet" and a.pretrained
        assert a.div_margin == 1.0
        assert cfg.schedule.iterations_per_epoch == 1000 and cfg.schedule.eval_every == 1
        assert cfg.selection == "best_test"
        assert cfg.artifacts.pair_similarity_histograms
        if "abe/figure7c" not in s.tables:
            assert a.lambda_div == 1.0
        if not all(t.startswith("abe/figure7") for t in s.tables):
            assert (a.branch_point, a.attention_depth) == ("pool3", 5)
        ks = {"sop": [1, 10, 100, 1000], "inshop": [1, 10, 20, 30, 40, 50]}.get(cfg.data.dataset, [1, 2, 4, 8])
        assert cfg.eval.recall_ks == ks


def test_abe_rows_learners_dims_and_divergence(catalog, expanded):
    specs = expanded[("abe", "paper")]
    seen = 0
    for s in specs:
        for c in s.cells:
            m = ROW_RE.match(c.row)
            if not m:
                continue
            seen += 1
            a = s.config.abe
            learners = int(m.group("m") or m.group("h"))
            assert (a.learners, a.embedding_dim) == (learners, int(m.group("d"))), c.row
            assert a.variant == ("heads" if m.group("h") else "abe"), c.row
            want_div = bool(m.group("m")) and learners > 1 and "without" not in c.row
            assert a.divergence is want_div, c.row
    assert seen > 50
    idx = cell_index(specs)
    assert idx[("table2", "ABE-8-512 without L_div", "ens_r1")].config.abe.divergence is False
    assert idx[("table3", "8-heads with L_div", "ens_r1")].config.abe.divergence is True
    assert idx[("table3", "8-heads", "ens_r1")].config.abe.variant == "heads"
    for row in ("ABE-2-512", "ABE-4-512", "ABE-8-512"):
        s = idx[("table5", row, "cub_r1")]
        assert s.config.data.cropped and s.dataset == "cub200"
        assert idx[("table5", row, "cars_r8")].config.data.cropped
        assert not idx[("table4", row, "cub_r1")].config.data.cropped
        assert idx[("table6", row, "sop_r1000")].dataset == "sop"
        assert idx[("table7", row, "inshop_r50")].dataset == "inshop"
    for depth in range(1, 8):
        assert idx[("figure7a", str(depth), "cars_r1")].config.abe.attention_depth == depth
    for row, point in {"pool2": "pool2", "in(3a)": "inception3a", "in(3b)": "inception3b", "pool3": "pool3",
                       "in(4a)": "inception4a", "in(4b)": "inception4b"}.items():
        cfg = idx[("figure7b", row, "cars_r1")].config
        assert (cfg.abe.branch_point, cfg.abe.attention_depth, cfg.data.batch_size) == (point, 5, 40)
    for row in catalog.table("abe/figure7c").rows:
        assert idx[("figure7c", row.name, "cars_r1")].config.abe.lambda_div == row.attrs["lambda_div"]


@pytest.mark.parametrize("profile", PROFILES)
def test_abe_shared_runs(expanded, profile):
    idx = cell_index(expanded[("abe", profile)])
    abe8 = {idx[k].hash for k in [
        ("table1", "ABE-8-512", "ens_r1"), ("table2", "ABE-8-512", "ens_r1"), ("table4", "ABE-8-512", "cars_r1"),
        ("figure5", "ABE-8", "cars_cos_hist"), ("figure6", "ABE-8", "cars_attention_masks"),
        ("figure7a", "5", "cars_r1"), ("figure7c", "1", "cars_r1"),
    ]}
    assert len(abe8) == 1
    assert idx[("figure7b", "pool3", "cars_r1")].hash not in abe8  # batch 40, a run of its own
    assert idx[("figure5", "ABE-8 without L_div", "cars_cos_hist")] is idx[("table2", "ABE-8-512 without L_div", "ens_r1")]
    assert idx[("figure5", "8-heads", "cars_cos_hist")] is idx[("table3", "8-heads", "ens_r1")]
    assert idx[("table3", "8-heads", "ens_r1")] is idx[("table1", "8-heads-512", "ens_r1")]
    assert idx[("figure5", "8-heads with L_div", "cars_cos_hist")] is idx[("table3", "8-heads with L_div", "ens_r1")]
    assert idx[("figure6", "ABE-8", "cars_attention_masks")].config.artifacts.attention_masks > 0
    for row in ("ABE-2-512", "ABE-4-512"):
        assert idx[("table1", row, "ens_r1")] is idx[("table4", row, "cars_r1")]


# ---------------------------------------------------------------------------
# Coverage: every cell, the right source, the right metric
# ---------------------------------------------------------------------------

LOGGED = {
    "cohort": re.compile(r"^(member[1-9]\d*|ensemble)$"),
    "abe": re.compile(r"^(learner[1-9]\d*|ensemble|learners_mean|learners_std)$"),
    "distill": re.compile(r"^(student|teacher)$"),
}


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("paper", PAPERS)
def test_every_cell_is_filled_by_a_run_that_logs_it(catalog, expanded, paper, profile):
    specs = expanded[(paper, profile)]
    idx = cell_index(specs)
    for table in catalog.tables():
        if table.paper != paper:
            continue
        for row in table.rows:
            rows = catalog.recipe(table.key).rows if table.key in catalog.recipe_names() else {}
            if row.cited and not (row.name in rows and rows[row.name].rerun):
                assert not any(k[:2] == (table.id, row.name) for k in idx), f"{table.key} {row.name} is cited"
                continue
            for col, value in zip(table.columns, row.values):
                key = (table.id, row.name, col.id)
                if col.is_stat:  # model_stats: computed from the row's config, no run
                    assert key not in idx
                    assert any(k[:2] == (table.id, row.name) for k in idx), f"{key}: row has no run"
                    continue
                if table.kind == "table" and value is None:
                    continue  # printed "-": nothing to reproduce
                assert key in idx, f"{table.key}: no run fills {row.name} / {col.id} ({profile})"
                s = idx[key]
                cell = cell_of(s, *key)
                assert s.dataset == col.dataset and s.config.data.cropped == col.cropped, key
                assert LOGGED[s.config.method].match(cell.source), f"{key}: source {cell.source}"
                if cell.source.startswith("member"):
                    assert int(cell.source[6:]) <= len(s.config.cohort.members), key
                if cell.source.startswith("learner") and cell.source[7:].isdigit():
                    assert int(cell.source[7:]) <= s.config.abe.learners, key
                if cell.source in ("learners_mean", "learners_std"):
                    assert s.config.abe.learners > 1, key
                if col.metric.startswith("recall@"):
                    assert int(col.metric[len("recall@"):]) in s.config.eval.recall_ks, key
                if col.metric == "pair_cosine_histogram":
                    assert s.config.artifacts.pair_similarity_histograms, key
                if col.metric == "attention_masks":
                    assert s.config.artifacts.attention_masks > 0 and s.config.abe.variant == "abe", key


def test_run_counts(expanded):
    counts = {k: len(v) for k, v in expanded.items()}
    # The same sharing structure in both profiles.
    # DM²: 68 for its own rows + 14 re-runs of cited rows (Table 2: Margin, MS, SoftTriple
    # and NSM on CUB, Cars and SOP; Table 3: NSM and MS on In-Shop)
    assert counts[("dm2", "paper")] == counts[("dm2", "smoke")] == 68 + 14
    assert counts[("abe", "paper")] == counts[("abe", "smoke")] == 50


# ---------------------------------------------------------------------------
# Assumptions, smoke profile
# ---------------------------------------------------------------------------


def test_assumptions_are_recorded(catalog):
    dm2 = catalog.recipe("dm2/defaults").all_assumed()
    abe = catalog.recipe("abe/defaults").all_assumed()
    for key in ("schedule.epochs", "optim.lr_schedule", "loss.params.margin", "selection"):
        assert key in dm2
    for key in ("optim.lr", "optim.weight_decay", "optim.lr_schedule", "schedule.epochs", "abe.freeze_bn",
                "abe.normalize_embeddings", "loss.params.pairs", "selection"):
        assert key in abe and len(abe[key]) > 20
    assert "distill.metric_weight" in catalog.recipe("dm2/table4").assumed
    assert "loss.miner" in catalog.recipe("dm2/table6").assumed
    assert "cohort.architectures" in catalog.recipe("dm2/table5").assumed
    assert "abe.lambda_div" in catalog.recipe("abe/figure7c").assumed
    for name in catalog.runnable_names():
        assert catalog.recipe(name).all_assumed(), name


@pytest.mark.parametrize("paper", PAPERS)
def test_smoke_profile_is_small_and_valid(expanded, paper):
    smoke = expanded[(paper, "smoke")]
    budget = 6 * 8 * 40  # DM² smoke: 6 epochs x 8 iterations x batch 40 per model
    for s in smoke:
        cfg = s.config
        jobs = [cfg] + ([cfg.distill.teacher] if cfg.distill else [])
        for job in jobs:
            d = job.data
            assert d.synthetic is not None and d.crop_size <= 64 and d.num_workers == 0, s.label
            assert job.schedule.epochs * job.schedule.iterations_per_epoch * d.batch_size <= budget, s.label
            models = (job.cohort.members if job.cohort else []) + ([job.distill.student] if job.distill else [])
            models += [job.abe] if job.abe else []
            for m in models:
                assert m.arch.startswith("tiny_") and not m.pretrained, s.label
            if d.sampler == "class_balanced":
                train_classes = d.synthetic.classes // 2
                assert d.batch_size // d.images_per_class <= train_classes, s.label


def test_dm2_smoke_cost_within_budget(expanded):
    """All of DM²'s smoke runs cost at most 6x Table 1's, in model-iterations (a
    distillation student counts 1.5 models: its own step plus the teacher's forward):
    Table 1 takes under 5 min here, so all of DM² stays within about 30 min."""

    def cost(s):
        c = s.config
        models = len(c.cohort.members) if c.method == "cohort" else 1.5
        return models * c.schedule.epochs * c.schedule.iterations_per_epoch * c.data.batch_size

    smoke = expanded[("dm2", "smoke")]
    table1 = sum(cost(s) for s in smoke if "dm2/table1" in s.tables)
    total = sum(cost(s) for s in smoke)
    assert total <= 6 * table1


# ---------------------------------------------------------------------------
# Layer merging, and the recipe values against the implementations that read them
# ---------------------------------------------------------------------------


def test_switching_the_loss_drops_the_old_parameters():
    base = {"loss": {"name": "triplet", "params": {"margin": 0.2}, "miner": "distance_weighted",
                     "miner_params": {"cutoff": 0.5}}}
    out = merge_layer(base, {"loss": {"name": "contrastive", "params": {"margin": 1.0}, "miner": None}})
    assert out["loss"] == {"name": "contrastive", "params": {"margin": 1.0}, "miner": None, "miner_params": {}}
    same = merge_layer(base, {"loss": {"name": "triplet", "params": {"swap": True}}})
    assert same["loss"]["params"] == {"margin": 0.2, "swap": True}
    tweak = merge_layer(base, {"loss": {"params": {"margin": 0.3}}})
    assert tweak["loss"]["params"] == {"margin": 0.3}
    d = merge_layer({"distill": {"loss": "rkd_da", "params": {"w_angle": 40}}},
                    {"distill": {"loss": "compact", "params": {"lam": 10}}})
    assert d["distill"]["params"] == {"lam": 10}


def test_recipe_parameters_are_accepted_by_the_implementations(expanded):
    """Every loss/distillation/ABE parameter in a recipe is one the training core knows."""
    import benchmark.losses.distill as distill
    import benchmark.losses.metric as losses
    import benchmark.models.abe as abe_models
    seen = set()
    for (paper, profile), specs in expanded.items():
        if profile != "paper":
            continue
        for s in specs:
            cfg = s.config
            key = repr((cfg.loss, cfg.distill and (cfg.distill.loss, cfg.distill.params)))
            if key not in seen:
                seen.add(key)
                losses.build_metric_loss(cfg.loss, num_classes=10, embedding_dim=16)
                if cfg.distill:
                    distill.build_distill_loss(cfg.distill.loss, cfg.distill.params)
            if cfg.abe:
                abe_models.resolve_branch_point(cfg.abe.branch_point)


def test_overrides_file_is_one_layer_whatever_its_key_order(catalog, tmp_path):
    """A file that switches the loss keeps its parameters in any key order (as a
    recipe's `set` does), and reads 1e-4 as the number it is."""
    from benchmark.recipes import parse_overrides

    for i, text in enumerate(["loss: {params: {margin: 0.7}, name: contrastive}\noptim.lr: 1e-4\n",
                              "loss: {name: contrastive, params: {margin: 0.7}}\noptim.lr: 1e-4\n"]):
        f = tmp_path / f"o{i}.yaml"
        f.write_text(text, encoding="utf-8")
        ctx = Context(profile="smoke", overrides=parse_overrides([str(f)], []), rows=["Independent"],
                      datasets=["cub200"])
        (spec,) = expand(catalog, select(catalog, "dm2/table1"), ctx)
        assert spec.config.loss.name == "contrastive" and spec.config.loss.params == {"margin": 0.7}, text
        assert spec.config.optim.lr == 1e-4
