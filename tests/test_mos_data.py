"""MOS loaders on tiny fake copies of each official layout, plus the real CLIVE subset and natural split."""

from __future__ import annotations

import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pytest
import scipy.io

from stream_iqa.data.mos import (
    MOSItem,
    load_csv,
    load_mos_dataset,
    natural_split,
    split_items,
)
from stream_iqa.settings import DataSettings

DATA_ROOT = DataSettings().root


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not decoded by the loaders")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _by_name(items: list[MOSItem]) -> dict[str, MOSItem]:
    return {item.path.name: item for item in items}


# ------------------------------------------------------------------------------------------------------------ csv


def test_csv_explicit_scale_maps_to_0_100_with_std(tmp_path: Path) -> None:
    _touch(tmp_path, "sub/a.png", "b.png")
    csv_path = _write(tmp_path / "scores.csv", "image,mos,std\nsub/a.png,1,0.4\nb.png,4,\n")
    items = load_csv(csv_path, scale=(0, 5))
    assert items == [MOSItem(tmp_path / "sub/a.png", 20.0, 8.0), MOSItem(tmp_path / "b.png", 80.0, None)]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["0.25", "0.5"], [25.0, 50.0]),  # (0, 1)
        (["1", "3"], [0.0, 50.0]),  # (1, 5)
        (["0.5", "7"], [5.0, 70.0]),  # (0, 10): 0.5 is below 1, so not (1, 5)
        (["12", "64"], [12.0, 64.0]),  # (0, 100)
    ],
)
def test_csv_auto_scale_picks_narrowest_fitting_rating_scale(
    tmp_path: Path, values: list[str], expected: list[float]
) -> None:
    _touch(tmp_path, "a.jpg", "b.jpg")
    _write(tmp_path / "mos.csv", f"image,mos\na.jpg,{values[0]}\nb.jpg,{values[1]}\n")
    items = load_mos_dataset("csv", tmp_path)  # a folder means its mos.csv
    assert [i.mos for i in items] == pytest.approx(expected)
    assert all(i.std is None for i in items)


def test_csv_dmos_flip_and_out_of_known_scales(tmp_path: Path) -> None:
    _touch(tmp_path, "a.jpg", "b.jpg")
    csv_path = _write(tmp_path / "mos.csv", "image,mos\na.jpg,10\nb.jpg,90\n")
    assert [i.mos for i in load_csv(csv_path, higher_is_better=False)] == pytest.approx([90.0, 10.0])
    _write(csv_path, "image,mos\na.jpg,-3\nb.jpg,120\n")
    with pytest.raises(ValueError, match="pass scale"):
        load_csv(csv_path)
    with pytest.raises(ValueError, match=r"mos.csv:2: MOS -3.0 outside the rating scale \[0, 100\]"):
        load_csv(csv_path, scale=(0, 100))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("image,score\na.jpg,3\n", r"mos.csv:1: missing column\(s\) mos"),
        ("image,mos\na.jpg,3\nb.jpg\n", r"mos.csv:3: 1 fields, header has 2"),
        ("image,mos\na.jpg,3,9\n", r"mos.csv:2: 3 fields, header has 2"),
        ("image,mos\na.jpg,good\n", r"mos.csv:2: column 'mos' is not a number: 'good'"),
        ("image,mos\na.jpg,nan\n", r"mos.csv:2: column 'mos' is not finite"),
        ("image,mos\na.jpg,3\n\na.jpg,4\n", r"mos.csv:4: image 'a.jpg' already listed on line 2"),
        ("image,mos\n,3\n", r"mos.csv:2: empty 'image'"),
        ("image,mos\n", "no rated images"),
        ("", "empty table"),
    ],
)
def test_csv_malformed_raises_value_error_with_line(tmp_path: Path, text: str, match: str) -> None:
    _touch(tmp_path, "a.jpg")
    _write(tmp_path / "mos.csv", text)
    with pytest.raises(ValueError, match=match):
        load_csv(tmp_path / "mos.csv", scale=(1, 5))


def test_csv_missing_table_or_image_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_csv(tmp_path / "nope.csv")
    with pytest.raises(FileNotFoundError, match="mos.csv"):
        load_csv(tmp_path)
    _write(tmp_path / "mos.csv", "image,mos\nghost.png,3\n")
    with pytest.raises(FileNotFoundError, match=r"1 of 1 listed images not found, e.g. .*ghost.png"):
        load_csv(tmp_path / "mos.csv")


# ---------------------------------------------------------------------------------------------- official layouts


def test_clive_layout(tmp_path: Path) -> None:
    _touch(tmp_path / "images", "1001.JPG", "t2.png")
    _write(tmp_path / "mos.csv", "image,mos,std\n1001.JPG,53.5575,19.6285\nt2.png,3.4976,10\n")
    items = load_mos_dataset("clive", tmp_path)
    assert items[0] == MOSItem(tmp_path / "images/1001.JPG", 53.5575, 19.6285)
    assert items[1].mos == 3.4976
    with pytest.raises(FileNotFoundError, match="data set folder not found"):
        load_mos_dataset("clive", tmp_path / "missing")


def _livec(root: Path, names: list[str], mos: list[float], std: list[float] | None) -> None:
    data = root / "ChallengeDB_release" / "Data"
    data.mkdir(parents=True)
    cells = np.empty((len(names), 1), dtype=object)
    for i, name in enumerate(names):
        cells[i, 0] = np.array([name])
    scipy.io.savemat(data / "AllImages_release.mat", {"AllImages_release": cells})
    scipy.io.savemat(data / "AllMOS_release.mat", {"AllMOS_release": np.array([mos])})
    if std is not None:
        scipy.io.savemat(data / "AllStdDev_release.mat", {"AllStdDev_release": np.array([std])})


def test_livec_official_layout_skips_training_images_by_default(tmp_path: Path) -> None:
    _livec(tmp_path, ["t1.bmp", "10.JPG", "11.bmp"], [50.0, 80.5, 12.0], [9.0, 8.0, 7.0])
    images = tmp_path / "ChallengeDB_release" / "Images"
    _touch(images, "trainingImages/t1.bmp", "10.JPG", "11.bmp")
    items = load_mos_dataset("livec", tmp_path)  # the folder above ChallengeDB_release
    assert items == [MOSItem(images / "10.JPG", 80.5, 8.0), MOSItem(images / "11.bmp", 12.0, 7.0)]
    with_training = load_mos_dataset("livec", tmp_path / "ChallengeDB_release", include_training=True)
    assert with_training[0] == MOSItem(images / "trainingImages/t1.bmp", 50.0, 9.0)


def test_livec_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"AllImages_release.mat"):
        load_mos_dataset("livec", tmp_path)
    _livec(tmp_path, ["10.JPG", "11.bmp"], [80.5], None)
    _touch(tmp_path / "ChallengeDB_release" / "Images", "10.JPG", "11.bmp")
    with pytest.raises(ValueError, match="2 names, 1 MOS"):
        load_mos_dataset("livec", tmp_path)


KONIQ_HEADER = '"image_name","c1","c2","c3","c4","c5","c_total","MOS","SD","MOS_zscore"\n'


def test_koniq10k_maps_1_5_and_zscore(tmp_path: Path) -> None:
    _write(
        tmp_path / "koniq10k_scores_and_distributions.csv",
        KONIQ_HEADER + '"1.jpg",0,0,100,0,0,100,3.0,0.4,50.1\n"2.jpg",0,0,0,0,100,100,5.0,0.0,88.4\n',
    )
    _touch(tmp_path / "512x384", "1.jpg", "2.jpg")
    items = load_mos_dataset("koniq10k", tmp_path)  # no 1024x768/: falls back to 512x384/
    assert items == [MOSItem(tmp_path / "512x384/1.jpg", 50.0, 10.0), MOSItem(tmp_path / "512x384/2.jpg", 100.0, 0.0)]
    z = load_mos_dataset("koniq10k", tmp_path, use_zscore=True)
    assert [(i.mos, i.std) for i in z] == [(50.1, None), (88.4, None)]
    with pytest.raises(FileNotFoundError, match="1024x768"):
        load_mos_dataset("koniq10k", tmp_path, resolution="1024x768")


def test_koniq10k_rejects_scores_off_the_1_5_scale(tmp_path: Path) -> None:
    _write(tmp_path / "koniq10k_scores_and_distributions.csv", KONIQ_HEADER + '"1.jpg",0,0,0,0,0,0,50.0,1,50\n')
    _touch(tmp_path / "1024x768", "1.jpg")
    with pytest.raises(ValueError, match=r":2: MOS 50.0 outside the rating scale \[1.0, 5.0\]"):
        load_mos_dataset("koniq10k", tmp_path)


def test_kadid10k_dmos_is_a_1_5_mos_and_var_becomes_std(tmp_path: Path) -> None:
    root = tmp_path / "kadid10k"
    table = "dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png,4.57,0.16\nI01_01_05.png,I01.png,1.0,0.0\n"
    _write(root / "dmos.csv", table)
    _touch(root / "images", "I01_01_01.png", "I01_01_05.png")
    items = load_mos_dataset("kadid10k", tmp_path)  # the folder above kadid10k/
    assert items[0].path == root / "images/I01_01_01.png"
    assert (items[0].mos, items[0].std) == pytest.approx((89.25, 10.0))
    assert (items[1].mos, items[1].std) == (0.0, 0.0)


def _xlsx(path: Path, rows: list[list[str | float]]) -> None:
    """A minimal workbook as Excel writes it: text in sharedStrings, numbers inline, cell references on every cell."""
    strings: list[str] = []
    xml_rows = []
    for r, row in enumerate(rows, start=1):
        cells = []
        for c, value in enumerate(row):
            ref = f"{chr(ord('A') + c)}{r}"
            if isinstance(value, str):
                strings.append(value)
                cells.append(f'<c r="{ref}" t="s"><v>{len(strings) - 1}</v></c>')
            else:
                cells.append(f'<c r="{ref}"><v>{value}</v></c>')
        xml_rows.append(f'<row r="{r}">{"".join(cells)}</row>')
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("xl/workbook.xml", f'<workbook xmlns="{main}" xmlns:r="{rel}"><sheets>'
                    '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>')
        zf.writestr("xl/_rels/workbook.xml.rels",
                    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                    f'<Relationship Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>')
        zf.writestr("xl/sharedStrings.xml",
                    f'<sst xmlns="{main}">{"".join(f"<si><t>{escape(s)}</t></si>" for s in strings)}</sst>')
        zf.writestr("xl/worksheets/sheet1.xml", f'<worksheet xmlns="{main}"><sheetData>{"".join(xml_rows)}'
                    "</sheetData></worksheet>")


def test_spaq_xlsx_and_csv(tmp_path: Path) -> None:
    header: list[str | float] = ["Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness"]
    _xlsx(tmp_path / "Annotations" / "MOS and Image attribute scores.xlsx",
          [header, ["00001.jpg", 42.5, 40, 41, 42, 43], ["00002.jpg", 100, 1, 2, 3]])  # short row: trailing cells empty
    _touch(tmp_path / "TestImage", "00001.jpg", "00002.jpg")
    items = load_mos_dataset("spaq", tmp_path)
    assert items == [MOSItem(tmp_path / "TestImage/00001.jpg", 42.5), MOSItem(tmp_path / "TestImage/00002.jpg", 100.0)]

    other = tmp_path / "csv_variant"
    _write(other / "MOS and Image attribute scores.csv", "Image name,MOS\n00001.jpg,7\n")
    _touch(other / "small", "00001.jpg")
    assert load_mos_dataset("spaq", other, image_dir="small") == [MOSItem(other / "small/00001.jpg", 7.0)]


def test_spaq_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="MOS and Image attribute scores.xlsx"):
        load_mos_dataset("spaq", tmp_path)
    _write(tmp_path / "MOS and Image attribute scores.xlsx", "not a zip")
    _touch(tmp_path / "TestImage", "00001.jpg")
    with pytest.raises(ValueError, match="not a readable xlsx"):
        load_mos_dataset("spaq", tmp_path)


def test_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown data set kind 'live'"):
        load_mos_dataset("live", tmp_path)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------------- splits


def _items(folder: str, n: int) -> list[MOSItem]:
    return [MOSItem(Path(folder) / f"img_{i:04d}.png", float(i % 100)) for i in range(n)]


def test_split_items_is_deterministic_by_name_only() -> None:
    items = _items("/data/a", 1000)
    train, val = split_items(items, 0.2, seed=0)
    assert len(train) + len(val) == 1000 and not {i.path for i in train} & {i.path for i in val}
    assert 150 < len(val) < 250  # binomial(1000, 0.2): mean 200, sd 12.6
    assert [i.path for i in val] == sorted(i.path for i in val)  # input order kept

    shuffled = list(reversed(_items("/elsewhere/b", 1000)))  # other machine, other order
    val_names = {i.path.name for i in split_items(shuffled, 0.2, seed=0)[1]}
    assert val_names == {i.path.name for i in val}
    subset = items[:500]  # fewer images: each keeps its side
    assert {i.path.name for i in split_items(subset, 0.2, seed=0)[1]} == val_names & {i.path.name for i in subset}
    assert {i.path.name for i in split_items(items, 0.2, seed=1)[1]} != val_names


def test_split_items_extremes_and_bad_fraction() -> None:
    items = _items("/d", 50)
    assert split_items(items, 0.0, 3) == (items, [])
    assert split_items(items, 1.0, 3) == ([], items)
    with pytest.raises(ValueError, match="val_fraction"):
        split_items(items, 1.5, 0)


def test_natural_split_fake(tmp_path: Path) -> None:
    natural = tmp_path / "natural"
    _touch(natural, "Kodak24/a.png", "Kodak24/b.png", "CBSD68/c.png")
    _write(natural / "split.csv", "image,split\nKodak24/a.png,train\nCBSD68/c.png,val\nKodak24/b.png,train\n")
    expected = {"train": [natural / "Kodak24/a.png", natural / "Kodak24/b.png"], "val": [natural / "CBSD68/c.png"]}
    assert natural_split(natural) == expected
    assert natural_split(tmp_path) == expected  # the data folder above natural/
    _write(natural / "split.csv", "image,split\nKodak24/a.png,train\nKodak24/a.png,val\n")
    with pytest.raises(ValueError, match="split.csv:3: image 'Kodak24/a.png' already listed on line 2"):
        natural_split(natural)
    _write(natural / "split.csv", "image,split\nKodak24/zz.png,train\n")
    with pytest.raises(FileNotFoundError, match="zz.png"):
        natural_split(natural)


# ------------------------------------------------------------------------------------------------------ real data


@pytest.mark.data
@pytest.mark.skipif(not (DATA_ROOT / "clive" / "mos.csv").is_file(), reason="shared/data/clive not present")
def test_real_clive_subset() -> None:
    items = load_mos_dataset("clive", DATA_ROOT / "clive")
    assert len(items) == 697
    assert all(item.path.is_file() for item in items)
    assert all(0.0 <= item.mos <= 100.0 and item.std is not None and item.std > 0 for item in items)
    assert len({item.path.name for item in items}) == 697


@pytest.mark.data
@pytest.mark.skipif(not (DATA_ROOT / "natural" / "split.csv").is_file(), reason="shared/data/natural not present")
def test_real_natural_split() -> None:
    splits = natural_split(DATA_ROOT / "natural")
    assert {k: len(v) for k, v in splits.items()} == {"train": 232, "val": 58}
