"""End to end in a real browser: Airflow 3.3 with the plugin, headless Chromium, Selenium.

Starts ``airflow api-server`` and ``airflow dag-processor`` on SQLite in a temporary
AIRFLOW_HOME, logs in through Airflow's login page, opens "Workflow Templates" from the
Airflow navigation, fills a template's form (an out-of-range value first, to see the
inline message), creates the DAG, and finds it in Airflow. Screenshots go to
``out/screenshots/``.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import need_service
from tests.support import airflow_components, api_server_env, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "out" / "screenshots"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
HOSTILE_GREETING = "hi from selenium $(id) {{ conf }}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_wait = wait_until


@pytest.fixture(scope="module")
def airflow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """api-server + dag-processor with the plugin and the loader DAG file; yields URLs and login."""
    need_service(bool(CHROMIUM and CHROMEDRIVER), "Debian chromium and chromium-driver")
    pytest.importorskip("selenium", reason="pip install selenium")
    home = tmp_path_factory.mktemp("airflow-home")
    dags, plugins, repo_root = home / "dags", home / "plugins", home / "templates-repo"
    dags.mkdir()
    plugins.mkdir()
    shutil.copy(ROOT / "dags" / "hpcai_template_instances.py", dags)
    shutil.copy(ROOT / "plugins" / "hpcai_plugin.py", plugins)
    password = secrets.token_urlsafe(12)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = api_server_env(home, port, dags=dags, plugins=plugins, password=password,
                         AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="3",
                         AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
                         HPCAI_TEMPLATES_DIR=str(repo_root))
    from airflow_provider_hpcai.templates.repository import TemplateRepository
    from airflow_provider_hpcai.templates.settings import TemplateSettings

    # Nothing is published: the gallery of a fresh install shows the built-in templates.
    repo = TemplateRepository(repo_root, TemplateSettings(root=repo_root, builtin=True))
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    with airflow_components(AIRFLOW, ("api-server", "dag-processor"), env, home, base):
        yield {"base": base, "password": password, "repo": repo, "home": home}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _token(stack: dict[str, Any]) -> str:
    response = httpx.post(f"{stack['base']}/auth/token", json={"username": "admin", "password": stack["password"]}, timeout=10)
    response.raise_for_status()
    return response.json()["access_token"]


def test_create_a_dag_from_the_gallery(airflow_stack, browser):
    try:
        _gallery_flow(airflow_stack, browser)
    except BaseException:
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.switch_to.default_content()
        browser.save_screenshot(str(SHOTS / "failure.png"))
        print("failed at", browser.current_url, "saved", SHOTS / "failure.png")
        raise


def _gallery_flow(airflow_stack, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    SHOTS.mkdir(parents=True, exist_ok=True)
    base = airflow_stack["base"]
    wait = WebDriverWait(browser, 60)

    # A browser without Airflow's cookie is refused by the plugin.
    browser.get(f"{base}/hpcai/templates")
    assert "Log in" in browser.find_element(By.TAG_NAME, "body").text

    # Log in through Airflow's own login page.
    browser.get(f"{base}/")
    wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys("admin")
    browser.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(airflow_stack["password"], Keys.ENTER)
    wait.until(lambda d: "/auth/login" not in d.current_url)

    # "Workflow Templates" is in Airflow's navigation and opens the gallery inside the UI.
    link = wait.until(ec.element_to_be_clickable((By.XPATH, "//*[self::a or self::button][contains(., 'Workflow Templates')]")))
    assert browser.find_elements(By.XPATH, "//*[self::a or self::button][contains(., 'HPC Resources')]")
    link.click()
    frame = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe")))
    assert "/hpcai/templates" in frame.get_attribute("src")
    browser.switch_to.frame(frame)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".card[data-template='hello-local']")))
    assert len(browser.find_elements(By.CSS_SELECTOR, ".card")) == 5
    assert len(browser.find_elements(By.CSS_SELECTOR, ".card .tag.builtin")) == 5  # labelled "built-in"

    search = browser.find_element(By.ID, "search")
    search.send_keys("local parameter sweep")
    wait.until(lambda d: [c.get_attribute("data-template") for c in d.find_elements(By.CSS_SELECTOR, ".card")] == ["param-sweep"])
    search.clear()
    search.send_keys("hello")
    wait.until(lambda d: [c.get_attribute("data-template") for c in d.find_elements(By.CSS_SELECTOR, ".card")] == ["hello-local"])
    browser.save_screenshot(str(SHOTS / "01-gallery.png"))

    # The detail view: a form generated from the JSON Schema, with inline validation.
    browser.find_element(By.CSS_SELECTOR, ".card[data-template='hello-local']").click()
    greeting = wait.until(ec.visibility_of_element_located((By.ID, "param-greeting")))
    greeting.clear()
    greeting.send_keys(HOSTILE_GREETING)
    repeats = browser.find_element(By.ID, "param-repeats")
    repeats.clear()
    repeats.send_keys("50")
    wait.until(lambda d: "10" in d.find_element(By.ID, "msg-repeats").text)
    assert "invalid" in browser.find_element(By.ID, "field-repeats").get_attribute("class")
    browser.save_screenshot(str(SHOTS / "02-form-invalid.png"))
    repeats.clear()
    repeats.send_keys("3")
    wait.until(lambda d: d.find_element(By.ID, "msg-repeats").text == "")
    # valid parameters go to the advisor: a prediction, or a clear "no prediction" when it is absent
    wait.until(lambda d: d.find_elements(By.ID, "advice-table") or "No prediction" in d.find_element(By.ID, "advice").text)

    browser.find_element(By.ID, "instantiate").click()
    dag_link = wait.until(ec.visibility_of_element_located((By.ID, "dag-link")))
    dag_id = dag_link.text
    assert dag_id.startswith("tpl_hello_local_")
    assert dag_link.get_attribute("href").endswith(f"/dags/{dag_id}")
    browser.save_screenshot(str(SHOTS / "03-created.png"))

    record = next(r for r in airflow_stack["repo"].list_instances() if r["dag_id"] == dag_id)
    assert record["params"] == {"greeting": HOSTILE_GREETING, "repeats": 3} and record["owner"] == "admin"

    # The dag processor picks the instance up; Airflow's API and UI then know the DAG.
    headers = {"Authorization": f"Bearer {_token(airflow_stack)}"}
    _wait(lambda: httpx.get(f"{base}/api/v2/dags/{dag_id}", headers=headers, timeout=5).status_code == 200, 90,
          f"DAG {dag_id} in Airflow")
    tasks = httpx.get(f"{base}/api/v2/dags/{dag_id}/tasks", headers=headers, timeout=5).json()["tasks"]
    assert sorted(t["task_id"] for t in tasks) == ["done", "greet", "machine"]

    dag_link.click()  # target=_top: the whole window goes to the DAG's page
    browser.switch_to.default_content()
    wait.until(lambda d: d.current_url.endswith(f"/dags/{dag_id}"))
    wait.until(lambda d: dag_id in d.find_element(By.TAG_NAME, "body").text)
    time.sleep(1.5)  # let the graph settle for the screenshot
    browser.save_screenshot(str(SHOTS / "04-dag-in-airflow.png"))

    # The instance list shows it, and the HPC Resources page renders (503s are shown, not fatal).
    browser.get(f"{base}/hpcai/templates#/instances")
    wait.until(lambda d: dag_id in d.find_element(By.ID, "instances").text)
    browser.get(f"{base}/hpcai/resources")
    wait.until(lambda d: d.find_element(By.ID, "chart-cpus").find_elements(By.TAG_NAME, "svg")
               or d.find_element(By.ID, "cluster-status").text)
    wait.until(lambda d: d.find_element(By.ID, "usage-status").text)
    browser.save_screenshot(str(SHOTS / "05-hpc-resources.png"))
