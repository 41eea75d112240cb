"""End-to-end tests of ``trialsim app`` in a real browser: the app runs in a subprocess on a
free port, Selenium drives Debian's headless chromium through chromedriver, and what the page
shows is compared with the library's answer for the same scenario, replicates and seed.

Screenshots go to pytest's tmp_path (and to results/ when TRIALSIM_APP_SCREENSHOTS names a
folder). Skipped, with the reason, when chromium, chromedriver or selenium is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SFT = "scenarios/sft-19m.toml"  # relative to ROOT, as a user types it
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
EXAMPLE = ROOT / "scenarios" / "data" / "sft-example.csv"
MAP = (
    "participant=deltager,municipality=kommune,arm=gruppe,group=hold,trainer=træner,"
    "sessions_offered=tilbudt,sessions_attended=fremmøde"
)

selenium = pytest.importorskip(
    "selenium", reason="selenium is not installed (pip install -e '.[test]')"
)
if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
    pytest.skip(
        "no chromium/chromedriver binary (apt-get install -y chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402


@pytest.fixture(scope="module")
def app_url():
    exe = Path(sys.executable).parent / "trialsim"
    proc = subprocess.Popen(
        [str(exe), "app", SFT, "--port", "0", "--reps", "200"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = proc.stdout.readline()  # "trialsim app: http://127.0.0.1:PORT (...)"
    if "http://" not in line:
        proc.kill()
        pytest.fail(f"trialsim app did not start: {line}{proc.stdout.read()}")
    url = line.split()[2]
    for _ in range(100):  # until uvicorn accepts connections
        try:
            urllib.request.urlopen(url, timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def driver():
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):  # fmt: skip
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield d
    d.quit()


def screenshot(d, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    d.execute_script(
        "document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);"
        "document.querySelectorAll('*').forEach(e => { if (e.scrollTop) e.scrollTop = 0; });"
    )
    time.sleep(0.3)
    d.save_screenshot(str(path))
    folder = os.environ.get("TRIALSIM_APP_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(folder) / name)
    return path


def wait(fn, timeout: float = 60.0, what: str = "the page"):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = fn()
            if last:
                return last
        except Exception as exc:  # element not there yet, stale element
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def type_into(d, input_id: str, text: str) -> None:
    el = d.find_element(By.ID, input_id)
    el.send_keys(Keys.CONTROL, "a")
    el.send_keys(text)
    el.send_keys(Keys.TAB)


def click(d, element_id: str) -> None:
    el = d.find_element(By.ID, element_id)
    d.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
    try:
        el.click()
    except Exception:  # covered while the page re-renders around it: the DOM's own click
        d.execute_script("arguments[0].click();", el)


def sim_result(d) -> dict | None:
    """The simulated result the page shows (its exact numbers), once no run is in progress."""
    if d.find_elements(By.ID, "simulating-progress"):
        return None
    els = d.find_elements(By.ID, "sim-json")
    if not els:
        return None
    return json.loads(els[0].get_attribute("textContent"))


def wait_for_simulation(d, overrides: list[str], reps: int, timeout: float = 90.0) -> dict:
    def done():
        r = sim_result(d)
        return r if r and r["overrides"] == overrides and r["reps"] == reps else None

    return wait(done, timeout, f"the simulation of {overrides} x {reps}")


def library_answer(overrides: list[str], reps: int, seed: int = 20161):
    from trialsim.analyse.registry import default_analysis
    from trialsim.power.simulation import simulate_operating_characteristics
    from trialsim.scenario import load_scenario

    s = load_scenario(ROOT / SFT, overrides)
    name = default_analysis(s.structure, s.primary).name
    (oc,), _ = simulate_operating_characteristics(s, [name], reps=reps, seed=seed)
    return s, oc


def test_changing_the_icc_gives_the_librarys_simulation(app_url, driver, tmp_path):
    from trialsim.app.compute import merged_raw
    from trialsim.power.from_scenario import analytic_power
    from trialsim.scenario import read_scenario_raw

    d = driver
    d.get(app_url)
    wait(lambda: d.find_element(By.ID, "analytic-table"), what="analytic power")
    type_into(d, "icc_group", "0.1")
    overrides = ["groups.icc_group=0.1"]
    shown = wait_for_simulation(d, overrides, 200)
    s, oc = library_answer(overrides, 200)
    for k in ("power", "power_mcse", "type1", "bias", "bias_mcse", "coverage", "empirical_se"):
        assert shown[k] == getattr(oc, k), k  # the same replicates: identical numbers
    assert shown["analysis"] == oc.analysis == "mixed"
    table = d.find_element(By.ID, "analytic-table")
    assert float(table.get_attribute("data-power")) == analytic_power(s)["power"]
    command = d.find_element(By.ID, "cli_command_text").get_attribute("value")
    assert command == f"trialsim power {SFT} --set groups.icc_group=0.1 --reps 200 --seed 20161"
    text = d.find_element(By.ID, "sim-result").text
    assert f"{oc.power:.3f} ± {oc.power_mcse:.3f}" in text
    # the scenario download is the base file with the override, read back exactly
    href = d.find_element(By.ID, "download_scenario").get_attribute("href")
    cookies = "; ".join(f"{c['name']}={c['value']}" for c in d.get_cookies())
    request = urllib.request.Request(href, headers={"Cookie": cookies})
    downloaded = tomllib.loads(urllib.request.urlopen(request, timeout=30).read().decode())
    expected = merged_raw(read_scenario_raw(ROOT / SFT), overrides, SFT)
    assert downloaded == expected
    screenshot(d, tmp_path, "app-planner.png")


def test_bad_input_shows_the_cli_line_next_to_the_field(app_url, driver):
    from click.testing import CliRunner

    from trialsim.cli import main

    d = driver
    d.get(app_url)
    wait(lambda: d.find_element(By.ID, "analytic-table"), what="analytic power")
    type_into(d, "icc_group", "1.5")
    error = wait(lambda: d.find_element(By.ID, "error-icc_group").text, 30, "the field's error")
    cli = CliRunner().invoke(main, ["validate", str(SFT), "--set", "groups.icc_group=1.5"])
    assert cli.exit_code == 2
    assert f"error: {error}" == cli.output.strip().replace(str(ROOT / SFT), SFT)
    # the server lives on: a good value clears the message and answers again
    type_into(d, "icc_group", "0.05")
    wait(lambda: not d.find_elements(By.ID, "error-icc_group"), 30, "the error to clear")
    wait(lambda: d.find_element(By.ID, "analytic-table"), 30, "analytic power again")


def test_a_second_tab_is_its_own_session(app_url, driver):
    d = driver
    d.get(app_url)
    wait(lambda: d.find_element(By.ID, "cli_command_text"), what="the command")
    first = d.current_window_handle
    d.switch_to.new_window("tab")
    d.get(app_url)
    wait(lambda: d.find_element(By.ID, "cli_command_text"), what="the command in tab 2")
    type_into(d, "icc_group", "0.2")

    def command():
        return d.find_element(By.ID, "cli_command_text").get_attribute("value")

    wait(lambda: "--set groups.icc_group=0.2" in command(), 30, "tab 2's command")
    d.close()
    d.switch_to.window(first)
    assert d.find_element(By.ID, "icc_group").get_attribute("value") == "0.05"
    assert "--set" not in command()


def test_evaluator_page_matches_analyse_and_exact_bayes(app_url, driver, tmp_path):
    from trialsim.app.compute import evaluate

    d = driver
    d.get(app_url)
    d.find_element(By.LINK_TEXT, "Evaluate a trial").click()
    d.find_element(By.CSS_SELECTOR, "input#data_file").send_keys(str(EXAMPLE))
    wait(lambda: "complete" in d.find_element(By.ID, "data_file_progress").text.lower(), 30,
         "the upload")  # fmt: skip
    type_into(d, "data_map", MAP)
    type_into(d, "data_outcome", "psp")
    d.find_element(By.CSS_SELECTOR, "#data_better option[value='higher']").click()
    type_into(d, "data_mcid", "7")
    click(d, "evaluate")
    bayes = wait(lambda: d.find_element(By.ID, "bayes").text, 60, "the Bayesian table")
    expected = evaluate(EXAMPLE, mapping=MAP, outcome="psp", better="higher", mcid=7.0)
    p = expected["bayes"]["parameters"][0]
    assert f"{p['mean']:.3g} ({p['sd']:.3g})" in bayes
    assert f"{expected['bayes']['p_beyond_mcid']:.3f}" in bayes
    structure = d.find_element(By.ID, "structure").text.splitlines()
    assert structure == expected["structure"]
    estimate = expected["frequentist"][0]["estimate"]
    assert f"{estimate:.4g}" in d.find_element(By.ID, "frequentist").text
    wait(lambda: d.find_element(By.CSS_SELECTOR, "#posterior img"), 30, "the posterior plot")
    screenshot(d, tmp_path, "app-evaluate.png")


@pytest.mark.slow
def test_2000_replicates_refresh_time(app_url, driver, tmp_path):
    """How long the answer takes to refresh after an input changes (2 000 replicates)."""
    d = driver
    d.get(app_url)
    type_into(d, "reps", "2000")
    wait_for_simulation(d, [], 2000, 120)  # the first run also loads compiled kernels
    times = []
    for value in ("0.08", "0.06", "0.04"):
        t0 = time.perf_counter()
        type_into(d, "icc_group", value)
        shown = wait_for_simulation(d, [f"groups.icc_group={value}"], 2000, 120)
        times.append((time.perf_counter() - t0, shown["seconds"]))
    print("refresh after a change, 2000 replicates (browser s, server s):", times)
    screenshot(d, tmp_path, "app-2000.png")
    assert min(t for t, _ in times) < 20  # the goal is < 5 s; the machine is shared


@pytest.mark.slow
def test_cancel_stops_a_run(app_url, driver):
    d = driver
    d.get(app_url)
    wait_for_simulation(d, [], 200, 120)
    type_into(d, "reps", "20000")
    wait(lambda: d.find_element(By.ID, "simulating-progress"), 30, "the progress bar")
    click(d, "cancel")
    wait(lambda: d.find_element(By.ID, "sim-cancelled"), 30, "the run to stop")


@pytest.mark.slow
def test_designs_and_recruitment_tabs(app_url, driver, tmp_path):
    d = driver
    d.get(app_url)
    wait(lambda: d.find_element(By.ID, "analytic-table"), what="analytic power")
    d.find_element(By.LINK_TEXT, "Recruitment").click()
    table = wait(lambda: d.find_element(By.ID, "recruit-table").text, 120, "recruitment")
    assert "month" in table
    wait(lambda: d.find_element(By.CSS_SELECTOR, "#recruit_figure img"), 60, "the timeline")
    screenshot(d, tmp_path, "app-recruitment.png")
    d.find_element(By.LINK_TEXT, "Designs").click()
    type_into(d, "compare_reps", "50")
    click(d, "compare_run")
    table = wait(lambda: d.find_element(By.ID, "compare-table").text, 300, "the comparison")
    for design in ("individual", "cohort", "municipality", "stepped-wedge"):
        assert design in table
    screenshot(d, tmp_path, "app-designs.png")


def download(d, element_id: str) -> bytes:
    """What a download button serves (its link, fetched with the session's cookies)."""
    href = d.find_element(By.ID, element_id).get_attribute("href")
    cookies = "; ".join(f"{c['name']}={c['value']}" for c in d.get_cookies())
    request = urllib.request.Request(href, headers={"Cookie": cookies})
    return urllib.request.urlopen(request, timeout=60).read()


@pytest.mark.slow
def test_load_a_scenario_and_download_results(app_url, driver, tmp_path):
    import csv
    import io

    d = driver
    d.get(app_url)
    wait_for_simulation(d, [], 200, 120)
    bad = tmp_path / "broken.toml"
    bad.write_text("name = \n", encoding="utf-8")
    d.find_element(By.CSS_SELECTOR, "input#scenario_file").send_keys(str(bad))
    error = wait(lambda: d.find_element(By.ID, "error-upload").text, 30, "the upload error")
    assert error.startswith("broken.toml") and "not valid TOML" in error
    variant = ROOT / "scenarios" / "sft-19m-blinded.toml"  # a variant: base = sft-19m.toml
    d.find_element(By.CSS_SELECTOR, "input#scenario_file").send_keys(str(variant))
    wait(lambda: not d.find_elements(By.ID, "error-upload"), 30, "the error to clear")
    wait(lambda: "sft-19m-blinded" in d.find_element(By.ID, "scenario_name").text, 30, "name")
    shown = wait_for_simulation(d, [], 200, 120)
    from trialsim.scenario import load_scenario

    s = load_scenario(variant)
    field = d.find_element(By.ID, "assessor_unblinded_prob").get_attribute("value")
    assert float(field) == s.blinding.assessor_unblinded_prob
    assert shown["source"] == "sft-19m-blinded.toml"
    results = json.loads(download(d, "results_json"))
    assert results["scenario"] == s.name and results["scenario_sha256"] == s.digest()
    simulated = [a for a in results["analyses"] if a.get("method") == "simulation"]
    assert simulated and simulated[0]["power"] == shown["power"]
    rows = list(csv.DictReader(io.StringIO(download(d, "results_csv").decode())))
    assert {r["method"] for r in rows} == {"analytic", "simulation"}
    assert download(d, "curve_png").startswith(b"\x89PNG")
    assert b"<svg" in download(d, "curve_svg")[:2000]
