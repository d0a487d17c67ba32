"""mlsys_opt.catalog: data with provenance, sane physics, seed numbers, lookups, user entries, bad files."""
from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import tomllib

from mlsys_opt._types import MODEL_KINDS, PRECISIONS, TOPOLOGIES
from mlsys_opt.catalog import KINDS, Catalog, Tables, _load, load_catalog
from mlsys_opt.errors import CatalogError

DATA = Path(__file__).resolve().parents[1] / "mlsys_opt" / "catalog"

CONTRACT_NAMES = {
    "accelerators": ["h100_sxm", "h100_pcie", "a100_80gb", "a100_40gb", "h200", "b200", "gb200", "v100",
                     "mi250x", "mi300x", "tpu_v4", "tpu_v5e", "tpu_v5p", "gaudi2", "gaudi3", "l4", "t4",
                     "cerebras_wse2", "cerebras_wse3", "jetson_orin", "mobile_npu", "nrf52840"],
    "models": ["resnet50", "mobilenet_v2", "ds_cnn", "bert_large", "gpt3_175b", "llama3_8b", "llama3_70b",
               "llama3_405b", "mixtral_8x7b", "deepseek_v3"],
    "fabrics": ["nvlink3", "nvlink4", "nvlink5", "ib_hdr", "ib_ndr", "ib_xdr", "eth_100g", "eth_400g", "tpu_ici"],
    "regions": ["quebec", "norway", "france", "us_avg", "california", "texas", "virginia", "germany", "poland",
                "india", "singapore", "iceland"],
}


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def fr(cat):
    return cat.frames


def row(cat, kind, name):
    return cat.entry(kind, name)


# ------------------------------------------------------------------ contents

def test_kinds_and_sizes(cat):
    assert KINDS == ("accelerators", "models", "fabrics", "regions")
    for kind, names in CONTRACT_NAMES.items():
        assert set(names) <= set(cat.names(kind)), kind
    assert len(cat.names("accelerators")) >= 22
    assert len(cat.names("models")) >= 12
    assert len(cat.names("regions")) >= 12
    assert load_catalog() is cat  # the default is cached


def test_every_entry_has_provenance(fr):
    for kind, frame in fr.items():
        assert frame["source"].str.len().min() > 10, kind
        assert frame["display_name"].str.len().min() > 0, kind
        assert frame["name"].is_unique, kind
        assert (frame["year"].between(1990, 2030)).all(), kind
    assert fr["accelerators"]["price_source"].str.len().min() > 10


def test_toml_files_write_every_precision_explicitly():
    data = tomllib.loads((DATA / "accelerators.toml").read_text(encoding="utf-8"))
    for name, entry in data.items():
        assert sorted(entry["peak"]) == sorted(PRECISIONS), name
        for p, v in entry["peak"].items():
            assert isinstance(v, str) and v.strip() and v.strip() != "0", (name, p)
    for kind in KINDS:
        for name, entry in tomllib.loads((DATA / f"{kind}.toml").read_text(encoding="utf-8")).items():
            assert entry.get("source"), (kind, name)
            assert "year" in entry, (kind, name)


def test_accelerators_physically_sane(fr):
    a = fr["accelerators"]
    for col in ("mem_capacity_bytes", "mem_bw_bytes_per_s", "sram_bytes", "tdp_w", "price_usd",
                "cloud_usd_per_hour", "mtbf_s"):
        assert (a[col] > 0).all(), col
    assert (a["scaleup_bw_bytes_per_s"] >= 0).all()
    assert (a["accelerators_per_node"] >= 1).all()
    multi = a["accelerators_per_node"] > 1
    assert (a.loc[multi, "scaleup_bw_bytes_per_s"] > 0).all()
    peaks = a[[f"peak_{p}_flop_per_s" for p in PRECISIONS]].to_numpy()
    has = a[[f"has_{p}" for p in PRECISIONS]].to_numpy()
    assert np.array_equal(has, peaks > 0)          # missing = 0 and flag False, never a zero peak with True
    assert has.any(axis=1).all()
    assert np.isfinite(peaks).all()
    both = a["has_fp16"] & a["has_fp32"]
    assert (a.loc[both, "peak_fp16_flop_per_s"] >= a.loc[both, "peak_fp32_flop_per_s"]).all()
    both = a["has_fp8"] & a["has_fp16"]
    assert (a.loc[both, "peak_fp8_flop_per_s"] >= a.loc[both, "peak_fp16_flop_per_s"]).all()
    both = a["has_tf32"] & a["has_fp32"]
    assert (a.loc[both, "peak_tf32_flop_per_s"] >= a.loc[both, "peak_fp32_flop_per_s"]).all()
    dc = a["segment"] == "datacenter"
    ridge = a["peak_fp16_flop_per_s"] / a["mem_bw_bytes_per_s"]
    assert (ridge[dc & a["has_fp16"]] < 5000).all()
    assert (ridge[dc & a["has_fp16"]] > 1).all()
    assert np.allclose(a["ridge_flop_per_byte"], ridge)
    assert set(a["segment"]) <= {"datacenter", "edge", "mobile", "tiny"}


def test_wafer_scale_fields(fr):
    a = fr["accelerators"].set_index("name")
    for name in ("cerebras_wse2", "cerebras_wse3"):
        r = a.loc[name]
        assert r["is_wafer_scale"]
        assert r["injection_bw_bytes_per_s"] > 0
        assert r["mem_capacity_bytes"] == r["sram_bytes"]         # on-wafer SRAM is the memory
        assert r["mem_bw_bytes_per_s"] >= 1e16                     # ~20 PB/s on-wafer
        assert r["injection_bw_bytes_per_s"] < r["mem_bw_bytes_per_s"] / 1e4
    rest = a[~a["is_wafer_scale"]]
    assert (rest["injection_bw_bytes_per_s"] == 0).all()
    assert a["is_wafer_scale"].sum() == 2


def test_default_mtbf_is_seed_value(fr):
    assert (fr["accelerators"]["mtbf_s"] == 50_000 * 3600.0).all()  # seed 000 Sec. 7.1


def test_models_sane(fr):
    m = fr["models"]
    assert set(m["kind"]) <= set(MODEL_KINDS)
    assert (m["n_params"] > 0).all()
    assert (m["n_active_params"] > 0).all() and (m["n_active_params"] <= m["n_params"]).all()
    tf = m[m["kind"] != "cnn"]
    cnn = m[m["kind"] == "cnn"]
    for col in ("n_layers", "hidden_dim", "n_heads", "n_kv_heads", "head_dim", "ffn_dim", "vocab_size", "context_len"):
        assert (tf[col] > 0).all(), col
    assert ((tf["n_heads"] % tf["n_kv_heads"]) == 0).all()
    # heads * head_dim == hidden, except models whose papers say otherwise.
    exceptions = {"palm_540b", "deepseek_v3"}
    regular = tf[~tf["name"].isin(exceptions)]
    assert (regular["n_heads"] * regular["head_dim"] == regular["hidden_dim"]).all()
    assert (tf["flop_per_sample"] == 0).all()
    assert (cnn["flop_per_sample"] > 0).all()
    assert (cnn["hidden_dim"] == 0).all()
    moe = m[m["kind"] == "moe"]
    assert (moe["n_experts"] >= 2).all() and (moe["top_k"] <= moe["n_experts"]).all()
    assert (moe["n_active_params"] < moe["n_params"]).all()
    dense = m[m["kind"] != "moe"]
    assert (dense["n_experts"] == 1).all() and (dense["top_k"] == 1).all()
    assert (dense["n_active_params"] == dense["n_params"]).all()
    # Parameter counts roughly follow the shapes: 12 * L * h^2 (+ embeddings) for dense transformers.
    d = tf[tf["kind"] == "transformer"]
    approx = 12 * d["n_layers"] * d["hidden_dim"] ** 2
    assert ((d["n_params"] / approx).between(0.6, 1.7)).all()


def test_fabrics_and_regions_sane(fr):
    f = fr["fabrics"]
    assert (f["bw_bytes_per_s"] > 0).all() and (f["latency_s"] > 0).all()
    assert f["bisection_frac"].between(0, 1, inclusive="right").all()
    assert (f["oversubscription"] >= 1).all()
    assert set(f["topology"]) <= set(TOPOLOGIES)
    assert set(f["scope"]) == {"scale_up", "scale_out"}
    r = fr["regions"]
    assert (r["pue"] >= 1).all()
    assert (r["carbon_gco2e_per_kwh"] >= 0).all() and (r["wue_l_per_kwh"] >= 0).all()
    assert (r["electricity_usd_per_kwh"] > 0).all()
    assert r["carbon_gco2e_per_kwh"].max() < 1200


# ------------------------------------------------------------------ seed numbers

def test_seed_hardware_numbers(cat):
    h = row(cat, "accelerators", "h100_sxm")
    assert h["peak_fp16_flop_per_s"] == 989e12
    assert h["mem_bw_bytes_per_s"] == 3.35e12
    assert h["mem_capacity_bytes"] == 81559 * 2**20      # exposed bytes, not the label (issue 12)
    assert h["tdp_w"] == 700.0
    # seed 000 prints "989 TF / 3.35 TB/s ~ 296 FLOP/byte"; the equation gives 295.2.
    assert h["ridge_flop_per_byte"] == pytest.approx(989 / 3.35)
    assert round(h["ridge_flop_per_byte"]) == 295
    a = row(cat, "accelerators", "a100_80gb")
    assert a["peak_fp16_flop_per_s"] == 312e12 and a["mem_bw_bytes_per_s"] == 2.0e12
    assert a["tdp_w"] == 400.0 and a["mem_capacity_bytes"] == 80 * 2**30
    a40 = row(cat, "accelerators", "a100_40gb")
    assert a40["peak_fp16_flop_per_s"] == 312e12 and a40["mem_bw_bytes_per_s"] == 1.555e12
    assert 200 <= a40["ridge_flop_per_byte"] <= 208                       # seed 001 "~208"
    v = row(cat, "accelerators", "v100")
    assert (v["peak_fp16_flop_per_s"], v["mem_bw_bytes_per_s"], v["mem_capacity_bytes"], v["tdp_w"]) == \
        (125e12, 0.9e12, 32e9, 300.0)
    h2 = row(cat, "accelerators", "h200")
    assert (h2["peak_fp16_flop_per_s"], h2["mem_bw_bytes_per_s"], h2["mem_capacity_bytes"], h2["tdp_w"]) == \
        (989e12, 4.8e12, 143771 * 2**20, 700.0)
    b = row(cat, "accelerators", "b200")
    assert (b["peak_fp16_flop_per_s"], b["mem_bw_bytes_per_s"], b["mem_capacity_bytes"], b["tdp_w"]) == \
        (2250e12, 8.0e12, 183359 * 2**20, 1000.0)
    n = row(cat, "accelerators", "nrf52840")   # seed 004: 0.000064 TFLOPS, 1 MB, 0.000064 TB/s, 0.015 W
    assert (n["peak_fp16_flop_per_s"], n["mem_capacity_bytes"], n["mem_bw_bytes_per_s"], n["tdp_w"]) == \
        (64e6, 1e6, 64e6, 0.015)
    npu = row(cat, "accelerators", "mobile_npu")
    assert npu["peak_int8_flop_per_s"] == 35e12
    assert int(989e12 / npu["peak_int8_flop_per_s"]) == 28                # seed 001: datacenter ~28x mobile
    assert row(cat, "accelerators", "tpu_v5p")["peak_fp16_flop_per_s"] == 459e12
    assert row(cat, "accelerators", "h100_sxm")["peak_fp8_flop_per_s"] == 1979e12


def test_seed_model_numbers(cat):
    m = row(cat, "models", "llama3_70b")
    assert (m["n_params"], m["n_layers"], m["n_kv_heads"], m["head_dim"]) == (70.6e9, 80, 8, 128)
    assert row(cat, "models", "llama3_8b")["n_params"] == 8.03e9
    assert row(cat, "models", "gpt3_175b")["n_params"] == 175e9
    assert row(cat, "models", "resnet50")["n_params"] == 25.6e6
    assert row(cat, "models", "resnet50")["flop_per_sample"] == 8.2e9    # 4.1 GMAC x 2 FLOP/MAC
    assert row(cat, "models", "mobilenet_v2")["n_params"] == 3.4e6
    assert row(cat, "models", "ds_cnn")["n_params"] == 26e3
    # Seed 002 wall 5: Llama-3-8B at 4K context needs ~500 MB of KV cache in fp16.
    l8 = row(cat, "models", "llama3_8b")
    kv = 2 * l8["n_layers"] * l8["n_kv_heads"] * l8["head_dim"] * 4096 * 2
    assert kv == pytest.approx(537e6, rel=0.01)


def test_seed_region_and_fabric_numbers(cat):
    assert row(cat, "regions", "quebec")["carbon_gco2e_per_kwh"] == 20.0
    assert row(cat, "regions", "poland")["carbon_gco2e_per_kwh"] == 820.0
    assert row(cat, "regions", "us_avg")["carbon_gco2e_per_kwh"] == 429.0
    ndr = row(cat, "fabrics", "ib_ndr")
    assert ndr["bw_bytes_per_s"] == 50e9 and ndr["latency_s"] == 2e-6
    assert row(cat, "fabrics", "eth_100g")["bw_bytes_per_s"] == 12.5e9    # seed 000 "~12 GB/s"
    # Seed 000 Sec. 6 worked example: 10,322 kWh (PUE 1.2 given there) -> 206 / 4,428 / 8,464 kg.
    kwh = 64 * 400 * 336 / 1000 * 1.2
    got = [round(kwh * row(cat, "regions", r)["carbon_gco2e_per_kwh"] / 1000) for r in ("quebec", "us_avg", "poland")]
    assert got == [206, 4428, 8464]


# ------------------------------------------------------------------ tables

def test_tables_align_with_frames(cat, fr):
    t = cat.tables()
    assert isinstance(t, Tables)
    a = fr["accelerators"]
    n_hw = len(a)
    assert t.hw.peak_flop_per_s.shape == (n_hw, len(PRECISIONS))
    assert t.hw.peak_flop_per_s.dtype == jnp.float32 and t.hw.has_precision.dtype == jnp.bool_
    assert t.model.kind.dtype == jnp.int32 and t.fabric.topology.dtype == jnp.int32
    for field in t.hw._fields:
        assert getattr(t.hw, field).shape[0] == n_hw, field
    for sub, kind in zip(t, KINDS):
        for field, arr in zip(sub._fields, sub):
            assert arr.shape[0] == len(fr[kind]), (kind, field)
            assert bool(jnp.all(jnp.isfinite(arr.astype(jnp.float32)))), (kind, field)
    i = cat.index("accelerators", "H100")
    assert float(t.hw.mem_bw_bytes_per_s[i]) == pytest.approx(3.35e12, rel=1e-6)
    assert float(t.hw.peak_flop_per_s[i, PRECISIONS.index("fp16")]) == pytest.approx(989e12, rel=1e-6)
    assert not bool(t.hw.has_precision[i, PRECISIONS.index("int4")])
    assert float(t.hw.peak_flop_per_s[i, PRECISIONS.index("int4")]) == 0.0
    j = cat.index("models", "mixtral_8x7b")
    assert int(t.model.kind[j]) == MODEL_KINDS.index("moe")
    k = cat.index("fabrics", "tpu_ici")
    assert int(t.fabric.topology[k]) == TOPOLOGIES.index("torus")
    assert cat.tables() is t  # cached per dtype


def test_tables_dtype_override(cat):
    t64 = cat.tables(dtype=jnp.float64)  # conftest enables x64
    assert t64.hw.mem_bw_bytes_per_s.dtype == jnp.float64
    i = cat.index("accelerators", "a100_40gb")
    assert float(t64.hw.mem_bw_bytes_per_s[i]) == 1.555e12


# ------------------------------------------------------------------ lookups

@pytest.mark.parametrize("kind, query, name", [
    ("accelerators", "h100_sxm", "h100_sxm"),
    ("accelerators", "H100_SXM", "h100_sxm"),
    ("accelerators", "H100", "h100_sxm"),
    ("accelerators", "H100 SXM", "h100_sxm"),
    ("accelerators", "NVIDIA H100 SXM5 80GB", "h100_sxm"),
    ("accelerators", "A100", "a100_80gb"),
    ("accelerators", "a100-40gb", "a100_40gb"),
    ("accelerators", "TPU v5p", "tpu_v5p"),
    ("accelerator", "B200", "b200"),
    ("models", "Llama-3-70B", "llama3_70b"),
    ("models", "Mixtral", "mixtral_8x7b"),
    ("regions", "Québec", "quebec"),
    ("regions", "US", "us_avg"),
    ("fabrics", "IB NDR", "ib_ndr"),
])
def test_index_accepts_names_display_names_aliases(cat, kind, query, name):
    i = cat.index(kind, query)
    assert cat.names(kind)[i] == name
    assert cat.entry(kind, query)["name"] == name


@pytest.mark.parametrize("kind, query, suggestion", [
    ("accelerators", "h1000", "h100_sxm"),
    ("accelerators", "h100_sxn", "h100_sxm"),
    ("models", "llama3_70", "llama3_70b"),
    ("regions", "quebek", "quebec"),
    ("fabrics", "ib_nrd", "ib_ndr"),
])
def test_index_typo_suggests(cat, kind, query, suggestion):
    with pytest.raises(CatalogError) as e:
        cat.index(kind, query)
    msg = str(e.value)
    assert f"did you mean '{suggestion}'" in msg and repr(query) in msg and "allowed:" in msg


def test_unknown_kind_suggests(cat):
    with pytest.raises(CatalogError, match="did you mean 'regions'"):
        cat.names("regionz")


def test_frames_are_copies(cat):
    f = cat.frames["accelerators"]
    f.loc[0, "tdp_w"] = -1.0
    assert cat.frames["accelerators"].loc[0, "tdp_w"] > 0


# ------------------------------------------------------------------ user entries

def test_override_by_name_keeps_rows_and_original(cat):
    i = cat.index("accelerators", "h100_sxm")
    mine = cat.with_entries("accelerators", {"h100_sxm": {"price": "25000 USD", "peak": {"fp8": "none"}}})
    assert mine.index("accelerators", "H100") == i
    assert mine.names("accelerators") == cat.names("accelerators")
    e = mine.entry("accelerators", "h100_sxm")
    assert e["price_usd"] == 25000.0 and not e["has_fp8"] and e["peak_fp16_flop_per_s"] == 989e12
    assert "overridden by accelerators (dict)" in e["source"]
    assert cat.entry("accelerators", "h100_sxm")["price_usd"] == 30000.0  # original untouched
    assert float(mine.tables().hw.price_usd[i]) == 25000.0
    by_alias = cat.with_entries("accelerators", {"H100": {"price": "26000 USD"}})
    assert by_alias.names("accelerators") == cat.names("accelerators")
    assert by_alias.entry("accelerators", "h100_sxm")["price_usd"] == 26000.0


def test_extend_from_user_toml_and_based_on(cat, tmp_path):
    path = tmp_path / "my_chips.toml"
    path.write_text('''
[my_chip]
display_name = "My Chip"
vendor = "me"
segment = "edge"
year = 2025
peak = { fp32 = "1 TFLOP/s", tf32 = "none", fp16 = "4 TFLOP/s", fp8 = "none", int8 = "8 TOPS", int4 = "none" }
mem_capacity = "8 GB"
mem_bw = "100 GB/s"
sram = "4 MB"
tdp = "10 W"
scaleup_bw = "0 GB/s"
accelerators_per_node = 1
price = "$300"
cloud_price = "0.02 USD/hour"
price_source = "my estimate"
source = "my datasheet"

[h100_discount]
based_on = "H100"
price = "20000 USD"
''', encoding="utf-8")
    mine = cat.with_entries("accelerators", path)
    n = len(cat.names("accelerators"))
    assert mine.names("accelerators")[:n] == cat.names("accelerators")
    assert mine.names("accelerators")[n:] == ["my_chip", "h100_discount"]
    assert mine.entry("accelerators", "my chip")["mem_bw_bytes_per_s"] == 100e9
    d = mine.entry("accelerators", "h100_discount")
    assert d["price_usd"] == 20000.0 and d["mem_bw_bytes_per_s"] == 3.35e12
    assert "based on h100_sxm" in d["source"]
    assert mine.source_of("accelerators", "my_chip") == str(path)
    assert mine.tables().hw.mem_bw_bytes_per_s.shape == (n + 2,)


def test_si_column_override(cat):
    mine = cat.with_entries("accelerators", {"h100_sxm": {"mem_bw_bytes_per_s": 4e12, "peak_fp16_flop_per_s": 1e15}})
    e = mine.entry("accelerators", "h100_sxm")
    assert e["mem_bw_bytes_per_s"] == 4e12 and e["peak_fp16_flop_per_s"] == 1e15


def test_load_catalog_extra_file_and_dict(tmp_path):
    path = tmp_path / "extra.toml"
    path.write_text('''
[regions.my_dc]
display_name = "My DC"
year = 2024
carbon_intensity = "100 g/kWh"
pue = 1.3
wue = "1 L/kWh"
electricity_price = "0.1 USD/kWh"
source = "utility bill"

[models.llama3_70b]
context = 131072
''', encoding="utf-8")
    cat = load_catalog(extra=path)
    assert cat.entry("regions", "my_dc")["carbon_gco2e_per_kwh"] == 100.0
    assert cat.entry("models", "llama3_70b")["context_len"] == 131072
    assert load_catalog().entry("models", "llama3_70b")["context_len"] == 8192
    cat2 = load_catalog(extra={"regions": {"quebec": {"pue": 1.05}}})
    assert cat2.entry("regions", "quebec")["pue"] == 1.05


def test_user_errors_name_the_users_file(cat, tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[h100_sxm]\nmem_bw = "3.35 TB"\n', encoding="utf-8")
    with pytest.raises(CatalogError) as e:
        cat.with_entries("accelerators", path)
    assert str(e.value) == f"{path}: [h100_sxm] mem_bw: expected bandwidth (bytes/second), got '3.35 TB'"
    with pytest.raises(CatalogError, match=r"^accelerators \(dict\): \[new\] display_name: missing"):
        cat.with_entries("accelerators", {"new": {"price": "1 USD"}})
    with pytest.raises(CatalogError, match=r"\[x\] based_on: 'h1000' is not a known accelerator; did you mean 'h100_sxm'"):
        cat.with_entries("accelerators", {"x": {"based_on": "h1000"}})
    with pytest.raises(CatalogError, match=r"\[h2\] alias 'A100' is ambiguous: it also names \[a100_80gb\]"):
        cat.with_entries("accelerators", {"h2": {"based_on": "h100_sxm", "aliases": ["A100"]}})


# ------------------------------------------------------------------ bad files: one clear error each

GOOD_REGION = '''display_name = "Test"
year = 2024
carbon_intensity = "100 g/kWh"
pue = 1.2
wue = "1 L/kWh"
electricity_price = "0.1 USD/kWh"
source = "test"
'''


def _region_file(tmp_path, body: str) -> Path:
    path = tmp_path / "regions_bad.toml"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize("case, body, entry, field, fragment", [
    ("missing field", "[r1]\n" + GOOD_REGION.replace('pue = 1.2\n', ''), "r1", "pue", "missing"),
    ("wrong unit", "[r1]\n" + GOOD_REGION.replace('"100 g/kWh"', '"100 g"'),
     "r1", "carbon_intensity", "expected carbon_intensity (g CO2e/kWh), got '100 g'"),
    ("negative", "[r1]\n" + GOOD_REGION.replace('"0.1 USD/kWh"', '"-0.1 USD/kWh"'),
     "r1", "electricity_price", "> 0"),
    ("nan", "[r1]\n" + GOOD_REGION.replace("pue = 1.2", "pue = nan"), "r1", "pue", "not a finite number"),
    ("nan quantity", "[r1]\n" + GOOD_REGION.replace('"1 L/kWh"', '"nan L/kWh"'), "r1", "wue", "not a finite number"),
    ("pue below 1", "[r1]\n" + GOOD_REGION.replace("pue = 1.2", "pue = 0.9"), "r1", "pue", ">= 1"),
    ("unknown field", "[r1]\n" + GOOD_REGION + "carbon = 3\n", "r1", "carbon", "unknown field"),
    ("bare number", "[r1]\n" + GOOD_REGION.replace('"1 L/kWh"', '1'), "r1", "wue", "needs a unit"),
])
def test_bad_region_files(cat, tmp_path, case, body, entry, field, fragment):
    path = _region_file(tmp_path, body)
    with pytest.raises(CatalogError) as e:
        cat.with_entries("regions", path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: [{entry}] {field}: "), (case, msg)
    assert fragment in msg, (case, msg)
    assert "\n" not in msg


def test_duplicate_name_in_file(cat, tmp_path):
    path = _region_file(tmp_path, "[r1]\n" + GOOD_REGION + "\n[r2]\n" + GOOD_REGION + "\n[r1]\n" + GOOD_REGION)
    with pytest.raises(CatalogError) as e:
        cat.with_entries("regions", path)
    assert str(e.value).startswith(f"{path}: [r1] is defined twice (lines 1 and ")


def test_invalid_toml_names_file(cat, tmp_path):
    path = _region_file(tmp_path, "[r1\npue = 1\n")
    with pytest.raises(CatalogError, match=r"not valid TOML"):
        cat.with_entries("regions", path)
    assert str(path) in str(pytest.raises(CatalogError, cat.with_entries, "regions", path).value)


def test_missing_file(cat, tmp_path):
    with pytest.raises(CatalogError, match="cannot read catalog file"):
        cat.with_entries("regions", tmp_path / "nope.toml")


@pytest.mark.parametrize("fields, field, fragment", [
    ({"mem_bw": "3.35 TB"}, "mem_bw", "expected bandwidth (bytes/second), got '3.35 TB'"),
    ({"peak": {"fp32": "67 TFLOP/s", "tf32": "none", "fp16": "989 TFLOP/s", "int8": "none", "int4": "none"}},
     "peak.fp8", 'write fp8 = "none"'),
    ({"peak": {"fp32": "1 TFLOP/s", "tf32": "none", "fp16": "0 TFLOP/s", "fp8": "none", "int8": "none",
               "int4": "none"}}, "peak.fp16", "must be > 0"),
    ({"peak": {"fp33": "1 TFLOP/s"}}, "peak.fp33", "did you mean 'fp32'"),
    ({"tdp": "-700 W"}, "tdp", "expected power (watts) > 0, got '-700 W'"),
    ({"segment": "cloud"}, "segment", "allowed: datacenter, edge, mobile, tiny"),
    ({"scaleup_topology": "torus"}, "scaleup_topology", "allowed: switch, mesh"),
    ({"accelerators_per_node": 2.5}, "accelerators_per_node", "whole number"),
    ({"scaleup_bw": "0 GB/s"}, "scaleup_bw", "must be > 0 when accelerators_per_node = 8"),
    ({"mem_bandwidth": "1 TB/s"}, "mem_bandwidth", "did you mean 'mem_bw'"),
])
def test_bad_accelerator_fields_message(fields, field, fragment):
    raw = tomllib.loads((DATA / "accelerators.toml").read_text(encoding="utf-8"))["h100_sxm"]
    raw.update(fields)
    with pytest.raises(CatalogError) as e:
        _load.validate_entry("accelerators", "h100_sxm", raw, "accelerators.toml")
    msg = str(e.value)
    assert msg.startswith(f"accelerators.toml: [h100_sxm] {field}: "), msg
    assert fragment in msg, msg


def test_brief_example_message_exact():
    raw = tomllib.loads((DATA / "accelerators.toml").read_text(encoding="utf-8"))["h100_sxm"]
    raw["mem_bw"] = "3.35 TB"
    with pytest.raises(CatalogError) as e:
        _load.validate_entry("accelerators", "h100_sxm", raw, "accelerators.toml")
    assert str(e.value) == "accelerators.toml: [h100_sxm] mem_bw: expected bandwidth (bytes/second), got '3.35 TB'"


@pytest.mark.parametrize("fields, field, fragment", [
    ({"active_params": "80e9"}, "active_params", "must be <= params"),
    ({"kv_heads": 7}, "kv_heads", "must divide heads"),
    ({"params": "80 GB"}, "params", "expected params (parameters), got '80 GB'"),
    ({"flop_per_sample": "1 GFLOP"}, "flop_per_sample", "applies to kind 'cnn' only"),
    ({"kind": "rnn"}, "kind", "allowed: transformer, moe, cnn"),
    ({"layers": 0}, "layers", "must be > 0"),
    ({"kv_latent_dim": -576}, "kv_latent_dim", "must be >= 0"),
    ({"kv_latent_dim": 576.5}, "kv_latent_dim", "whole number"),
    ({"kv_latent_dim": "lots"}, "kv_latent_dim", "lots"),
    ({"kv_latent_dim": True}, "kv_latent_dim", "whole number"),
])
def test_bad_model_fields_message(cat, fields, field, fragment):
    with pytest.raises(CatalogError) as e:
        cat.with_entries("models", {"llama3_70b": fields})
    msg = str(e.value)
    assert msg.startswith(f"models (dict): [llama3_70b] {field}: "), msg
    assert fragment in msg, msg


def test_kv_latent_dim_mla(cat):
    # DeepSeek-V3 MLA (arXiv:2412.19437 §2.1.1/§4.2): d_c = 512 latent + d_h^R = 64 RoPE key per layer per token.
    assert row(cat, "models", "deepseek_v3")["kv_latent_dim"] == 576
    fr = cat.frames["models"]
    assert (fr.loc[fr["name"] != "deepseek_v3", "kv_latent_dim"] == 0).all()      # default: MHA/GQA formula
    assert float(cat.tables().model.kv_latent_dim[cat.index("models", "deepseek_v3")]) == 576.0
    # User overrides accept the field (dict or based_on), and a cnn may not set it.
    mine = cat.with_entries("models", {"llama3_70b": {"kv_latent_dim": 512},
                                       "ds_copy": {"based_on": "deepseek_v3", "display_name": "DS copy"}})
    assert mine.entry("models", "llama3_70b")["kv_latent_dim"] == 512
    assert mine.entry("models", "ds_copy")["kv_latent_dim"] == 576
    off = cat.with_entries("models", {"deepseek_v3": {"kv_latent_dim": 0}})
    assert off.entry("models", "deepseek_v3")["kv_latent_dim"] == 0
    with pytest.raises(CatalogError, match=r"\[resnet50\] kv_latent_dim: applies to kind"):
        cat.with_entries("models", {"resnet50": {"kv_latent_dim": 576}})


def test_moe_requires_expert_fields(cat):
    with pytest.raises(CatalogError, match=r"\[m\] active_params: missing"):
        cat.with_entries("models", {"m": {"based_on": "llama3_70b", "kind": "moe"}})
    ok = cat.with_entries("models", {"m": {"based_on": "llama3_70b", "kind": "moe", "active_params": "20e9",
                                           "experts": 8, "top_k": 2}})
    assert ok.entry("models", "m")["n_experts"] == 8


def test_invalid_entry_name(cat):
    with pytest.raises(CatalogError, match=r"\[Bad Name\] is not a valid name"):
        cat.with_entries("regions", {"Bad Name": {"based_on": "quebec"}})


def test_tables_first_built_inside_a_trace_are_concrete():
    """Catalog.tables() caches its arrays: built first inside jit, they must not be tracers."""
    import jax
    import jax.numpy as jnp

    from mlsys_opt.catalog import load_catalog
    cat = load_catalog({"accelerators": {"h100_trace_test": {"based_on": "h100_sxm"}}})   # a fresh cache
    jax.jit(lambda x: x * cat.tables(jnp.float32).hw.mem_bw_bytes_per_s[0])(1.0)
    assert not isinstance(cat.tables(jnp.float32).hw.mem_bw_bytes_per_s, jax.core.Tracer)
    assert float(cat.tables(jnp.float32).hw.mem_bw_bytes_per_s[0]) > 0
