"""Progress bars in notebooks executed by the site builder show their final state (crl_site.build)."""
import nbformat
import pytest

pytest.importorskip("nbclient")
pytest.importorskip("tqdm")

from crl_site.build import WIDGET_VIEW, execute_notebooks  # noqa: E402

CELL = ("from tqdm.auto import tqdm\n"
        "for _ in tqdm(range(5)): pass\n"
        "for _ in tqdm(range(3), leave=False): pass\n"
        "print('done')")


def test_executed_tqdm_bar_text_is_its_final_state(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)]), notebooks / "bar.ipynb")
    [executed] = execute_notebooks("smoke", tmp_path / "executed", notebooks, tmp_path / "cache",
                                   log=lambda line: None)
    outputs = nbformat.read(executed, as_version=4).cells[0].outputs
    bars = [out for out in outputs if WIDGET_VIEW in out.get("data", {})]
    # the kept bar (leave=True) only: the leave=False bar is hidden when closed, as in JupyterLab
    assert len(bars) == 1, outputs
    text = bars[0]["data"]["text/plain"]
    assert text.startswith("100%|██████████| 5/5 ["), text
    assert "0%|" not in text.replace("100%|", "")
    assert [out.get("text") for out in outputs if out["output_type"] == "stream"] == ["done\n"]
