"""Catalogue index and search on the exported int8 bundle: file format, search, incremental update, evaluation,
and HNSW against brute force."""

import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import CATALOGUE, cli_without, read_rows, write_catalogue
from huse_edge.cli import main
from huse_edge.index import IndexFileError, ProductIndex
from huse_edge.search import benchmark_search, evaluate_index
from huse_edge.transform import SPEC_VERSION as PREPROCESSING_VERSION

pytestmark = pytest.mark.slow


def test_index_file_is_a_documented_zip_without_pickle(slice_index, slice_catalogue):
    with zipfile.ZipFile(slice_index) as archive:
        header = json.loads(archive.read("index.json"))
        products = [json.loads(line) for line in archive.read("products.jsonl").decode().splitlines()]
        arrays = {name: np.load(io.BytesIO(archive.read(name)), allow_pickle=False)
                  for name in archive.namelist() if name.endswith(".npy")}
    rows = read_rows(slice_catalogue)
    assert header["count"] == len(products) == len(rows)
    assert [p["id"] for p in products] == [r["id"] for r in rows]
    for modality in ("image", "text", "fused"):
        floats, values, scales = (arrays[f"{modality}.{s}.npy"] for s in ("f32", "i8", "scale"))
        assert values.dtype == np.int8 and floats.shape == values.shape == (len(rows), header["dim"])
        np.testing.assert_allclose(np.linalg.norm(floats, axis=1), 1.0, atol=1e-5)
        error = np.abs(values * scales[:, None] - floats)
        assert np.all(error <= scales[:, None] / 2 + 1e-6)  # round-to-nearest on each row's own grid


def test_image_query_returns_the_right_kind_of_product(slice_index, slice_catalogue):
    row = read_rows(slice_catalogue)[7]
    photo = str(slice_catalogue.parent / row["image"])
    result = CliRunner().invoke(main, ["search", str(slice_index), "--image", photo,
                                       "--modality", "image", "--top-k", "5", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert [hit["rank"] for hit in found] == [1, 2, 3, 4, 5]
    assert [hit["category"][-1] for hit in found].count(row["article_type"]) >= 4


def test_a_product_is_its_own_nearest_neighbour(slice_index):
    index = ProductIndex.load(slice_index)
    for modality in ("image", "text", "fused"):
        vectors = index.embeddings[modality]
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        scores, rows = index.nearest(vectors[:20], modality, len(index), precision="float")
        for i in range(20):  # cosine 1 is the maximum: the product is in the group tied at the top (repeated
            # photos and titles give identical embeddings)
            assert abs(scores[i, 0] - 1.0) < 1e-5 and i in rows[i][np.abs(scores[i] - scores[i, 0]) < 1e-5]


def test_text_query_returns_the_right_kind_of_product(slice_index):
    result = CliRunner().invoke(main, ["search", str(slice_index), "--text", "black leather belt", "--top-k", "5",
                                       "--json"])
    assert result.exit_code == 0, result.output
    categories = [hit["category"][-1] for hit in json.loads(result.stdout)]
    assert categories.count("Belts") >= 4


def test_update_embeds_only_new_and_changed_products(slice_index, int8_bundle, slice_catalogue, tmp_path):
    rows = read_rows(slice_catalogue)
    taken = {r["id"] for r in rows}
    extra = [r for r in read_rows(CATALOGUE) if r["article_type"] == "Belts" and r["id"] not in taken][:3]
    changed = dict(rows[10], title=rows[10]["title"] + " limited edition")
    edited = rows[5:10] + [changed] + rows[11:] + extra  # 5 removed, 1 changed, 3 added
    catalogue = write_catalogue(tmp_path / "edited", edited)
    updated, rebuilt = tmp_path / "updated.hidx", tmp_path / "rebuilt.hidx"
    updated.write_bytes(slice_index.read_bytes())
    runner = CliRunner()
    result = runner.invoke(main, ["index", str(int8_bundle[0]), str(catalogue), "--out", str(updated)])
    assert result.exit_code == 0, result.output
    assert f"{len(rows) - 6} products kept, 4 embedded, 5 removed" in result.output
    assert runner.invoke(main, ["index", str(int8_bundle[0]), str(catalogue), "--out", str(rebuilt),
                                "--rebuild"]).exit_code == 0
    before, after, fresh = (ProductIndex.load(p) for p in (slice_index, updated, rebuilt))
    assert [p.id for p in after.products] == [p.id for p in fresh.products] == [r["id"] for r in edited]
    for modality in ("image", "text", "fused"):  # kept rows untouched, new rows as a full rebuild makes them
        np.testing.assert_array_equal(after.embeddings[modality][:5], before.embeddings[modality][5:10])
        np.testing.assert_allclose(after.embeddings[modality], fresh.embeddings[modality], atol=1e-6)
    assert after.products[5].title.endswith("limited edition")


def test_an_index_of_another_preprocessing_spec_is_embedded_again_on_update(slice_index, int8_bundle,
                                                                             slice_catalogue, tmp_path):
    """Its image rows came from photos prepared another way (an index from before the spec had versions)."""
    old = ProductIndex.load(slice_index)
    old.bundle.pop("preprocessing")
    old.save(tmp_path / "old.hidx")
    result = CliRunner().invoke(main, ["index", str(int8_bundle[0]), str(slice_catalogue), "--out",
                                       str(tmp_path / "old.hidx")])
    assert result.exit_code == 0, result.output
    assert f"0 products kept, {len(old)} embedded, 0 removed" in result.output
    assert ProductIndex.load(tmp_path / "old.hidx").bundle["preprocessing"] == PREPROCESSING_VERSION


def test_products_without_a_category_are_indexed_and_searched_but_not_evaluated(slice_index, int8_bundle,
                                                                               slice_catalogue, tmp_path):
    rows = read_rows(slice_catalogue)
    bare = [dict(r, master_category="", sub_category="", article_type="") for r in rows[:5]]
    out = tmp_path / "new.hidx"
    out.write_bytes(slice_index.read_bytes())
    result = CliRunner().invoke(main, ["index", str(int8_bundle[0]), str(write_catalogue(tmp_path / "new",
                                                                                         bare + rows[5:])),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{len(rows) - 5} products kept, 5 embedded, 0 removed" in result.output  # the category is fingerprinted
    index, before = ProductIndex.load(out), ProductIndex.load(slice_index)
    assert [p.category for p in index.products[:5]] == [()] * 5 and index.products[5].category
    for modality in ("image", "text", "fused"):
        np.testing.assert_array_equal(index.embeddings[modality], before.embeddings[modality])
    found = CliRunner().invoke(main, ["search", str(out), "--image", str(slice_catalogue.parent / rows[0]["image"]),
                                      "--bundle", str(int8_bundle[0]), "--top-k", "1", "--json"])
    assert found.exit_code == 0, found.output
    assert [(h["id"], h["category"]) for h in json.loads(found.stdout)] == [(rows[0]["id"], [])]
    assert evaluate_index(index, split="all")["products"] == len(rows) - 5

    columnless = [{k: v for k, v in r.items() if k not in ("master_category", "sub_category", "article_type")}
                  for r in rows[:6]]
    result = CliRunner().invoke(main, ["index", str(int8_bundle[0]), str(write_catalogue(tmp_path / "bare",
                                                                                         columnless)),
                                       "--out", str(tmp_path / "bare.hidx")])
    assert result.exit_code == 0, result.output
    with pytest.raises(IndexFileError, match="0 products with a category in the all split"):
        evaluate_index(ProductIndex.load(tmp_path / "bare.hidx"), split="all")


def test_int8_index_ranks_like_the_float_index(slice_index):
    """Per-row int8 rounding moves a score by at most sum_j |q_j| * scale_row / 2, so wherever float's best product
    leads the runner-up by more than twice that bound, the int8 index must return the same best product."""
    index = ProductIndex.load(slice_index)
    queries = index.embeddings["image"]  # a photo's nearest photo is mostly itself, by a clear margin
    exact, rounded = index.scores(queries, "image", "float"), index.scores(queries, "image", "int8")
    bound = np.abs(queries).sum(axis=1)[:, None] * index.quantised("image")[1][None, :] / 2
    assert np.all(np.abs(exact - rounded) <= bound + 1e-6)
    top2 = np.sort(exact, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * bound.max(axis=1)
    assert clear.any()  # the ranking check below is not vacuous
    np.testing.assert_array_equal(rounded[clear].argmax(axis=1), exact[clear].argmax(axis=1))
    metrics = evaluate_index(index, split="all")
    for direction in ("text_to_image", "image_to_text"):
        assert metrics[f"float_{direction}_class_R@1"] > 0.2  # 8 classes: chance is 0.125
        assert metrics[f"float_{direction}_instance_R@10"] >= metrics[f"float_{direction}_instance_R@1"]


def test_search_eval_option_prints_recall(slice_index):
    result = CliRunner().invoke(main, ["search", str(slice_index), "--eval", "all"])
    assert result.exit_code == 0, result.output
    assert "int8_text_to_image" in result.output and "class R@1" in result.output


def test_hnsw_matches_brute_force_and_survives_saving(slice_index, tmp_path):
    pytest.importorskip("faiss")
    index = ProductIndex.load(slice_index)
    figures = benchmark_search(index, queries=100)
    assert figures["ann_recall@10"] >= 0.95
    saved = tmp_path / "with_graph.hidx"
    index.save(saved)
    assert "image.hnsw.faiss" in zipfile.ZipFile(saved).namelist()
    query = index.embeddings["text"][:5]
    np.testing.assert_array_equal(ProductIndex.load(saved).nearest(query, "image", 10, method="ann")[1],
                                  index.nearest(query, "image", 10, method="ann")[1])


def test_broken_or_foreign_index_is_refused(slice_index, tmp_path, int8_bundle):
    truncated = tmp_path / "truncated.hidx"
    truncated.write_bytes(slice_index.read_bytes()[:1000])
    result = CliRunner().invoke(main, ["search", str(truncated), "--text", "shirt"])
    assert result.exit_code == 2 and "unreadable index" in result.output
    index = ProductIndex.load(slice_index)
    index.bundle = {**index.bundle, "model_sha256": "0" * 64}
    foreign = tmp_path / "foreign.hidx"
    index.save(foreign)
    result = CliRunner().invoke(main, ["search", str(foreign), "--text", "shirt"])
    assert result.exit_code == 2 and "another model" in result.output


def test_parallel_index_parts_read_as_one_index(int8_bundle, slice_catalogue, slice_index, tmp_path):
    """`--workers 2` embeds the catalogue in two processes into two part files; the directory loads as one index
    with the same rows as the single-file index, and searches the same. Run as `python -m huse_edge`, the command where
    the console script is not on PATH, whose worker processes are spawned from a package's `__main__`."""
    parts = tmp_path / "parts"
    result = subprocess.run([sys.executable, "-m", "huse_edge", "index", str(int8_bundle[0]), str(slice_catalogue),
                             "--out", str(parts), "--workers", "2"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in parts.iterdir()) == ["part-00000-of-00002.hidx", "part-00001-of-00002.hidx"]
    sizes = [len(ProductIndex.load(p)) for p in sorted(parts.iterdir())]
    assert min(sizes) > 0
    whole, single = ProductIndex.load(parts), ProductIndex.load(slice_index)
    assert len(whole) == len(single) == sum(sizes)
    order = single.rows(p.id for p in whole.products)
    for modality in ("image", "text", "fused"):
        np.testing.assert_allclose(whole.embeddings[modality], single.embeddings[modality][order], atol=1e-6)
    query = single.embeddings["text"][:5]  # the same ranking scores (near-identical products may swap places)
    np.testing.assert_allclose(whole.nearest(query, "image", 5)[0], single.nearest(query, "image", 5)[0], atol=1e-6)
    # one machine's part, run again: an up-to-date part re-embeds nothing
    result = CliRunner().invoke(main, ["index", str(int8_bundle[0]), str(slice_catalogue), "--out", str(parts),
                                       "--shard", "1/2"])
    assert result.exit_code == 0, result.output
    assert f"part-00001-of-00002.hidx: {sizes[1]} products; index: {sizes[1]} products kept, 0 embedded" \
        in result.output
    # parts of another count beside these would be a mixture that search refuses: refused before any embedding
    for option in (["--workers", "3"], ["--shard", "0/3"]):
        result = CliRunner().invoke(main, ["index", str(int8_bundle[0]), str(slice_catalogue), "--out", str(parts),
                                           *option])
        assert result.exit_code == 2 and "holds an index in 2 parts" in result.output, result.output
    assert len(list(parts.iterdir())) == 2
    # a missing part is an error, not a silently smaller index
    (parts / "part-00001-of-00002.hidx").unlink()
    with pytest.raises(IndexFileError, match="part-00001-of-00002.hidx"):
        ProductIndex.load(parts)


def test_index_with_graphs_where_faiss_is_missing_says_so_before_embedding(int8_bundle, slice_catalogue, tmp_path):
    result = cli_without(("faiss",), "index", int8_bundle[0], slice_catalogue, "--out", tmp_path / "x.hidx", "--ann")
    assert result.returncode == 2 and "pip install 'huse-edge[ann]'" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "embedding" not in result.stderr
    assert not (tmp_path / "x.hidx").exists()
